"""Server-rendered pages: each view reads its parameters, calls one function of `analytics.web.pages`
(which composes the API's selectors) and renders; the chart data goes into the page as json_script."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from analytics.errors import InvalidRequest, NotFound
from analytics.infra import inflight, rates
from analytics.policies.preview import FORMATS
from analytics.web import pages


def too_many(wait: int, *, status: int = 429, detail: str = "Too many requests") -> HttpResponse:
    response = HttpResponse(f"{detail}: try again in {wait} s.\n", status=status, content_type="text/plain")
    response["Retry-After"] = str(wait)
    return response


def read_access(view):
    """The API's read rule: a logged-in user (the admin's login) unless LAYERLENS_ANONYMOUS_READ; and
    the API's rates, counted together with the caller's API requests."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if settings.LAYERLENS_ANONYMOUS_READ or request.user.is_authenticated:
            wait = rates.hit(rates.USER if request.user.is_authenticated else rates.ANON, request)
            if wait is not None:
                return too_many(wait)
            try:
                return view(request, *args, **kwargs)
            except NotFound as exc:
                raise Http404(str(exc)) from exc
        return redirect_to_login(request.get_full_path(), reverse("web:login"))

    return wrapped


def _registry(request: HttpRequest):
    return pages.registry_get(request.GET.get("registry"))


def _int(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidRequest(f"{name} must be a whole number, not {value!r}")
    return int(value)


@read_access
def overview(request: HttpRequest) -> HttpResponse:
    data = pages.overview(registry=_registry(request))
    return render(request, "web/overview.html", {"data": data, "page": "overview"})


@read_access
def layers(request: HttpRequest) -> HttpResponse:
    registry = _registry(request)
    data = pages.layers_page(registry=registry) if registry else None
    return render(request, "web/layers.html", {"data": data, "page": "layers"})


@read_access
def image(request: HttpRequest, pk: int) -> HttpResponse:
    data = pages.image_page(holding_id=pk)
    return render(request, "web/image.html", {"data": data, "page": "image"})


@read_access
def lineage(request: HttpRequest) -> HttpResponse:
    registry = _registry(request)
    data = pages.lineage_page(registry=registry) if registry else None
    return render(request, "web/lineage.html", {"data": data, "page": "lineage"})


def _costly(request: HttpRequest) -> HttpResponse | None:
    """The API's what-if bounds: the `expensive` rate and a place among the costly requests."""
    wait = rates.hit(rates.EXPENSIVE, request)
    if wait is not None:
        return too_many(wait)
    try:
        inflight.take(request)  # given back by the middleware once the page is rendered
    except inflight.Busy as busy:
        return too_many(busy.wait, status=busy.status, detail=busy.detail)
    return None


@read_access
def whatif(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _whatif_policy(request)
    registry = _registry(request)
    context: dict = {"page": "whatif", "registry": registry, "data": None, "form": request.GET}
    context["policy_form"] = {}
    context["formats"] = FORMATS
    if registry is not None:
        context["choices"] = pages.tag_choices(registry=registry)
        context["picked"] = request.GET.getlist("tags")
        try:
            form = pages.WhatIfForm(
                registry=registry.id,
                namespace=request.GET.get("namespace", "").strip(),
                repository=request.GET.get("repository", "").strip(),
                tag_glob=request.GET.get("tag_glob", "").strip(),
                not_seen_days=_int(request, "not_seen_days"),
                not_pulled_days=_int(request, "not_pulled_days"),
                keep_newest=_int(request, "keep_newest"),
                tags=request.GET.getlist("tags"),
            )
            chosen = [form.namespace, form.repository, form.tag_glob, form.tags]
            if any([*chosen, form.not_seen_days, form.not_pulled_days, form.keep_newest]):
                refused = _costly(request)  # the same computation as the API's what-if
                if refused is not None:
                    return refused
                context["data"] = pages.whatif_page(form=form)
        except (NotFound, InvalidRequest) as exc:
            context["error"] = str(exc)
    # the form is shown again with the reason it could not be answered
    status = 400 if "error" in context else 200
    return render(request, "web/whatif.html", context, status=status)


def _whatif_policy(request: HttpRequest) -> HttpResponse:
    """A pasted cleanup policy (POST): previewed, nothing saved; the form again with the answer or the
    reason it could not be answered (400)."""
    form = {k: request.POST.get(k, "") for k in ("registry", "policy", "format", "namespace", "repository")}
    context: dict = {"page": "whatif", "data": None, "form": {}, "policy_form": form, "formats": FORMATS}
    try:
        registry = pages.registry_get(form["registry"] or None)
        context["registry"] = registry
        if registry is None:
            raise NotFound("no registry scanned yet")
        context["choices"] = pages.tag_choices(registry=registry)
        if not form["policy"].strip():
            raise InvalidRequest("paste a policy")
        refused = _costly(request)
        if refused is not None:
            return refused
        context["policy_data"] = pages.policy_page(
            registry=registry,
            text=form["policy"],
            format=form["format"] or None,
            namespace=form["namespace"].strip(),
            repository=form["repository"].strip(),
        )
    except (NotFound, InvalidRequest) as exc:
        context["error"] = str(exc)
    status = 400 if "error" in context else 200
    return render(request, "web/whatif.html", context, status=status)
