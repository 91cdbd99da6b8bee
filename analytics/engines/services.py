"""Write side for Docker Engines: registering one, and the engine scan (pull-through, read, ingest).

An engine scan is an `EngineScan`, not a `Scan`: a `Scan` always names a registry, counts repositories
and runs the registry state machine, none of which an engine has. The claim is the same conditional
update (`queued -> running`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from analytics.engines.ingest import engine_snapshot_ingest
from analytics.errors import Conflict, InvalidRequest, Unreachable
from analytics.models import Engine, EngineScan, Registry, Scan, Tag
from analytics.registries import MAX_PEM_CHARS, MAX_SECRET_CHARS, schedule_check, text_check
from workers.engine import EngineClient, EngineError, engine_host
from workers.registry.policy import NetworkPolicy, parse_networks

logger = logging.getLogger(__name__)

ENGINE_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")


def engine_endpoint_normalise(endpoint: str) -> str:
    """An engine's endpoint as stored: unix://, tcp://, ssh:// or npipe://, no trailing slash."""
    endpoint = endpoint.strip()
    if endpoint.startswith("engine:"):
        endpoint = endpoint[len("engine:") :]
    if endpoint.upper() == "DOCKER_HOST":
        endpoint = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if endpoint.startswith("/"):
        endpoint = "unix://" + endpoint
    if not endpoint.startswith(ENGINE_SCHEMES):
        raise InvalidRequest(
            f"{endpoint!r} is not an engine endpoint: "
            "use unix:///path/docker.sock, tcp://host:2376 or DOCKER_HOST"
        )
    return endpoint.rstrip("/")


RESOLVE_TIMEOUT_SECONDS = 2.0  # a request waits no longer for the policy check's name lookup


def engine_reachable_check(*, endpoint: str, allow_internal: bool) -> None:
    """Refuse (`InvalidRequest`) a tcp:// or ssh:// engine whose address the SSRF policy will refuse,
    before anything is stored; unix:// and npipe:// sockets are local and always pass."""
    host = engine_host(endpoint)
    if allow_internal or host is None:
        return
    policy = NetworkPolicy(allowed_networks=parse_networks(settings.LAYERLENS_ALLOWED_NETWORKS))
    why = policy.host_refusal(host[0], host[1], timeout=RESOLVE_TIMEOUT_SECONDS)
    if why is not None:
        raise InvalidRequest(
            f"endpoint: the scanner would refuse {why}; allow an internal engine with allow_internal: "
            "true (staff, API), `--allow-internal` (manage.py scan engine:...) or LAYERLENS_ALLOWED_NETWORKS"
        )


def engine_update(
    *,
    engine: Engine,
    endpoint: str | None = None,
    name: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    pull_tracked: bool | None = None,
    allow_internal: bool | None = None,
    check_reachable: bool = False,
) -> Engine:
    """Change an engine (saved, or new and unsaved); arguments left out keep their value.

    A new `endpoint` moves this engine (another engine having it is a conflict). `allow_internal` is
    the operator's decision (callers check who may make it). With `check_reachable` (the API, the
    admin, a command), a new engine, a moved one or one whose `allow_internal` is turned off is refused
    when the SSRF policy would refuse its address (`engine_reachable_check`)."""
    text_check("tls_ca", tls_ca, MAX_PEM_CHARS)
    text_check("tls_cert", tls_cert, MAX_PEM_CHARS)
    text_check("tls_key", tls_key, MAX_SECRET_CHARS)
    endpoint_before, allowed_before = engine.endpoint, engine.allow_internal
    if endpoint is not None:
        text_check("endpoint", endpoint, Engine._meta.get_field("endpoint").max_length)
        endpoint = engine_endpoint_normalise(endpoint)
        taken = Engine.objects.filter(endpoint=endpoint).exclude(pk=engine.pk).first()
        if taken is not None:
            raise Conflict(f"an engine with endpoint {endpoint} exists already ({taken.name})")
        engine.endpoint = endpoint
    if allow_internal is not None:
        engine.allow_internal = allow_internal
    moved = engine.pk is None or engine.endpoint != endpoint_before
    if check_reachable and (moved or (allowed_before and not engine.allow_internal)):
        engine_reachable_check(endpoint=engine.endpoint, allow_internal=engine.allow_internal)
    if name or engine.pk is None:
        wanted = name or engine.name or engine.endpoint
        taken = Engine.objects.filter(name=wanted).exclude(pk=engine.pk).first()
        if taken is not None:
            raise Conflict(
                f"the name {wanted!r} belongs to the engine at {taken.endpoint}; choose another name"
            )
        engine.name = wanted
    if tls_ca is not None:
        engine.tls_ca = tls_ca
    if tls_cert is not None:
        engine.tls_cert = tls_cert
    if tls_key is not None:
        engine.set_tls_key(tls_key)
    if pull_tracked is not None:
        engine.pull_tracked = pull_tracked
    # the name defaults to the endpoint, which may be longer than a name
    text_check("name", engine.name, Engine._meta.get_field("name").max_length)
    engine.save()
    return engine


def engine_upsert(*, endpoint: str, **changes: object) -> Engine:
    """The engine with this endpoint, registered when new (named after its endpoint unless `name`),
    then changed as `engine_update` does. Idempotent."""
    text_check("endpoint", endpoint, Engine._meta.get_field("endpoint").max_length)
    endpoint = engine_endpoint_normalise(endpoint)
    engine = Engine.objects.filter(endpoint=endpoint).first() or Engine(endpoint=endpoint)
    return engine_update(engine=engine, **changes)  # type: ignore[arg-type]


def engine_schedule(*, engine: Engine, tracked: bool, interval: timedelta | None) -> Engine:
    schedule_check(tracked=tracked, interval=interval, what="engine")
    engine.tracked, engine.scan_interval = tracked, interval
    engine.next_scan_at = timezone.now() if tracked else None
    engine.save(update_fields=["tracked", "scan_interval", "next_scan_at"])
    return engine


@contextmanager
def engine_client(engine: Engine) -> Iterator[EngineClient]:
    """The SDK client for `engine`; TLS material lives in a private temporary directory meanwhile."""
    with tempfile.TemporaryDirectory(prefix="ll-engine-tls-") as tmp:
        files: dict[str, str] = {}
        for key, text in (("ca", engine.tls_ca), ("cert", engine.tls_cert), ("key", engine.get_tls_key())):
            if text:
                path = os.path.join(tmp, f"{key}.pem")
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
                    fh.write(text)
                files[key] = path
        client = EngineClient(
            engine.endpoint,
            timeout=settings.REGISTRY_TIMEOUT_SECONDS * 4,
            tls_files=files or None,
            allow_internal=engine.allow_internal,
            allowed_networks=settings.LAYERLENS_ALLOWED_NETWORKS,
        )
        try:
            yield client
        finally:
            client.close()


def engine_scan_create(
    *, engine: Engine, pull: list[str] | None = None, trigger: str = "manual"
) -> EngineScan:
    return EngineScan.objects.create(engine=engine, pull=list(pull or []), trigger=trigger)


def engine_scan_enqueue(scan: EngineScan) -> None:
    transaction.on_commit(lambda: current_app.send_task("workers.tasks.scan_engine", args=[scan.id]))


# References one scan request may ask an engine to pull; each is a pull before the scan can start.
MAX_PULL = 100


def engine_scan_start(
    *,
    endpoint: str,
    pull: list[str] | None = None,
    trigger: str = "manual",
    inline: bool = False,
    allow_internal: bool | None = None,
    check_reachable: bool = False,
    require_answer: bool = False,
) -> EngineScan:
    """Create (and send, or with `inline` run) a scan of the engine at `endpoint`, registering it when
    new; `allow_internal` is saved on it. With `check_reachable` an engine the SSRF policy will refuse
    is an `InvalidRequest` saying how to allow it, and nothing is created. With `require_answer` (the
    command line) a new engine is recorded only if it answers now, else `Unreachable` and no row."""
    if pull and len(pull) > MAX_PULL:
        raise InvalidRequest(f"pull: at most {MAX_PULL} references per scan")
    with transaction.atomic():
        engine = Engine.objects.filter(endpoint=engine_endpoint_normalise(endpoint)).first()
        new = engine is None
        if engine is None or allow_internal is not None:
            engine = engine_upsert(
                endpoint=endpoint, allow_internal=allow_internal, check_reachable=check_reachable
            )
        elif check_reachable:
            engine_reachable_check(endpoint=engine.endpoint, allow_internal=engine.allow_internal)
        if new and require_answer:
            # An engine is recorded once it answered: one that never did would be an empty row.
            engine_answers_check(engine)
        scan = engine_scan_create(engine=engine, pull=pull, trigger=trigger)
        if not inline:
            engine_scan_enqueue(scan)
    if not inline:
        return scan
    try:
        return engine_scan_run(scan_id=scan.id)
    except EngineError as exc:  # no retry in this process: the scan fails with the engine's words
        return engine_scan_fail(scan_id=scan.id, message=engine_unreachable_message(engine.endpoint, exc))


def engine_unreachable_message(endpoint: str, exc: EngineError) -> str:
    prefix = f"cannot reach the engine at {endpoint}: "
    if not str(exc).startswith(prefix):
        return str(exc)
    reason = str(exc).removeprefix(prefix)
    return (
        f"cannot reach the Docker Engine at {endpoint}: {reason}; check that it runs and that the endpoint "
        "is right (unix:///var/run/docker.sock, tcp://host:2376, or engine:DOCKER_HOST)"
    )


def engine_answers_check(engine: Engine) -> None:
    """`Unreachable` unless the engine answers (the SDK's version request)."""
    try:
        with engine_client(engine):
            pass
    except EngineError as exc:
        raise Unreachable(engine_unreachable_message(engine.endpoint, exc)) from None


def _registry_for(reference: str) -> Registry | None:
    host = reference.split("/", 1)[0]
    return Registry.objects.filter(Q(url=f"http://{host}") | Q(url=f"https://{host}")).first()


def pull_references(*, engine: Engine, extra: list[str]) -> list[str]:
    """What a scan pulls: the references asked for, plus, with `pull_tracked`, every current tag of a
    tracked repository (or of a repository in a tracked registry)."""
    refs = list(extra)
    if engine.pull_tracked:
        tags = (
            Tag.objects.filter(removed_at__isnull=True, manifest__isnull=False)
            .filter(Q(repository__tracked=True) | Q(repository__registry__tracked=True))
            .select_related("repository__registry")
            .order_by("repository__registry_id", "repository__name", "name")
        )
        refs += [f"{t.repository.registry.host}/{t.repository.name}:{t.name}" for t in tags]
    return list(dict.fromkeys(refs))


def engine_scan_run(*, scan_id: int) -> EngineScan:
    """Run one engine scan.

    1. Claim it (`queued -> running`); a scan already taken or finished is left alone.
    2. Pull-through: pull each reference with the credentials Layerlens holds for its registry
       (a failed pull is an error on the scan; the rest goes on).
    3. Read the whole engine (outside any transaction), then ingest it in one transaction and link
       registry blobs to the engine's layers by diff_id.
    A transient engine error puts the scan back to queued and is re-raised for the task's retry.
    """
    claimed = EngineScan.objects.filter(id=scan_id, status=Scan.Status.QUEUED).update(
        status=Scan.Status.RUNNING, started_at=timezone.now()
    )
    scan = EngineScan.objects.select_related("engine").get(id=scan_id)
    if not claimed:
        return scan
    engine = scan.engine
    errors: list[dict[str, str]] = []
    pulled = 0
    try:
        with engine_client(engine) as client:
            for ref in pull_references(engine=engine, extra=scan.pull):
                registry = _registry_for(ref)
                try:
                    client.pull(
                        ref,
                        username=(registry.username or None) if registry else None,
                        password=registry.get_password() if registry else None,
                    )
                    pulled += 1
                except EngineError as exc:
                    errors.append({"reference": ref, "kind": "PullFailed", "message": str(exc)})
            snapshot = client.snapshot()
    except EngineError as exc:
        if exc.transient:
            EngineScan.objects.filter(id=scan_id).update(status=Scan.Status.QUEUED)
            raise
        return engine_scan_fail(scan_id=scan_id, message=str(exc))
    errors += [{"reference": i, "kind": "ImageUnreadable", "message": m} for i, m in snapshot.errors.items()]
    result = engine_snapshot_ingest(engine=engine, snapshot=snapshot)
    EngineScan.objects.filter(id=scan_id).update(
        status=Scan.Status.PARTIAL if errors else Scan.Status.SUCCEEDED,
        finished_at=timezone.now(),
        images_count=result.images,
        layers_count=result.layers,
        pulled_count=pulled,
        linked_blobs_count=result.linked_blobs,
        errors=errors,
    )
    return EngineScan.objects.select_related("engine").get(id=scan_id)


def engine_scan_fail(*, scan_id: int, message: str) -> EngineScan:
    EngineScan.objects.filter(id=scan_id).exclude(
        status__in=[Scan.Status.SUCCEEDED, Scan.Status.PARTIAL, Scan.Status.FAILED]
    ).update(status=Scan.Status.FAILED, finished_at=timezone.now(), message=message[:4000])
    return EngineScan.objects.select_related("engine").get(id=scan_id)


def engine_due_scans_enqueue(*, now) -> list[int]:
    """Tracked engines whose time has come, claimed with `skip_locked` in a transaction of its own (beat's
    task calls it after `due_scans_enqueue`'s has committed; outside one, `select_for_update` raises)."""
    created: list[int] = []
    active = [Scan.Status.QUEUED, Scan.Status.RUNNING]
    with transaction.atomic():
        for engine in (
            Engine.objects.select_for_update(skip_locked=True)
            .filter(tracked=True, scan_interval__isnull=False)
            .filter(Q(next_scan_at__isnull=True) | Q(next_scan_at__lte=now))
        ):
            engine.next_scan_at = now + engine.scan_interval
            engine.save(update_fields=["next_scan_at"])
            if EngineScan.objects.filter(engine=engine, status__in=active).exists():
                continue
            scan = engine_scan_create(engine=engine, trigger="schedule")
            engine_scan_enqueue(scan)
            created.append(scan.id)
    return created
