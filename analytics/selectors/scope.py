"""Scopes: which held manifests a figure is about (a registry, a namespace, a repository, filters),
built from the names a user gives."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime

from django.db.models import CharField, Exists, F, Func, OuterRef, Q, QuerySet, Value

from analytics.errors import InvalidRequest, NotFound
from analytics.models import Registry, Repository, RepositoryManifest, Tag
from analytics.selectors.lists import registry_lookup


@dataclass(frozen=True)
class Scope:
    """Which held manifests a figure is about. Empty fields mean "all"."""

    registry_id: int | None = None
    namespace: str | None = None  # a repository path prefix, e.g. "team" or "team/sub"
    repository_id: int | None = None
    include_untagged: bool = False
    # Filters on top of the place: a current tag matching a glob names the manifest (directly or
    # through a tagged index); config labels contain every key=value; platform os/arch[/variant];
    # the holding was last seen by a scan before / at-or-after a time.
    tag_glob: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    platform: str | None = None
    last_seen_before: datetime | None = None
    last_seen_after: datetime | None = None

    def describe(self) -> dict[str, object]:
        """The non-default fields, JSON-ready: what the answer says it was computed over."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if value in (None, False, ()):
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif key == "labels":
                value = dict(value)
            out[key] = value
        return out

    def _platform_parts(self) -> list[tuple[str, str]]:
        parts = (self.platform or "").strip("/").split("/")
        return [(f, v) for f, v in zip(("os", "architecture", "variant"), parts, strict=False) if v]

    def where(self, alias_rm: str = "rm", alias_r: str = "r") -> tuple[str, list[object]]:
        clauses, params = ["TRUE"], []
        if not self.include_untagged:
            clauses.append(f"{alias_rm}.present")
        if self.registry_id is not None:
            clauses.append(f"{alias_r}.registry_id = %s")
            params.append(self.registry_id)
        if self.repository_id is not None:
            clauses.append(f"{alias_r}.id = %s")
            params.append(self.repository_id)
        if self.namespace:
            ns = self.namespace.strip("/")
            clauses.append(f"({alias_r}.name = %s OR {alias_r}.name LIKE %s)")
            params += [ns, ns.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"]
        if self.tag_glob:
            # Two probes by manifest (a tag naming it, or a tag naming an index listing it), each on
            # the tag's manifest index; one EXISTS with the OR inside would read every tag of the
            # holding's repository for each holding (a summary of 12% of a million images: 134 s, now 6 s).
            clauses.append(
                f"""(EXISTS (SELECT 1 FROM analytics_tag t WHERE t.manifest_id = {alias_rm}.manifest_id
                    AND t.repository_id = {alias_rm}.repository_id AND t.removed_at IS NULL AND t.name ~ %s)
                OR EXISTS (SELECT 1 FROM analytics_indexentry e
                    JOIN analytics_tag t ON t.manifest_id = e.index_id
                    WHERE e.child_id = {alias_rm}.manifest_id AND t.repository_id = {alias_rm}.repository_id
                    AND t.removed_at IS NULL AND t.name ~ %s))"""
            )
            params += [glob_regex(self.tag_glob)] * 2
        manifest_filters, manifest_params = [], []
        if self.labels:
            manifest_filters.append("labels @> %s::jsonb")
            manifest_params.append(json.dumps(dict(self.labels)))
        for column, value in self._platform_parts():
            manifest_filters.append(f"{column} = %s")
            manifest_params.append(value)
        if manifest_filters:
            clauses.append(
                f"{alias_rm}.manifest_id IN (SELECT id FROM analytics_manifest WHERE "
                + " AND ".join(manifest_filters)
                + ")"
            )
            params += manifest_params
        if self.last_seen_before is not None:
            clauses.append(f"{alias_rm}.last_seen < %s")
            params.append(self.last_seen_before)
        if self.last_seen_after is not None:
            clauses.append(f"{alias_rm}.last_seen >= %s")
            params.append(self.last_seen_after)
        return " AND ".join(clauses), params

    def holdings(self) -> QuerySet[RepositoryManifest]:
        qs = RepositoryManifest.objects.all()
        if not self.include_untagged:
            qs = qs.filter(present=True)
        if self.registry_id is not None:
            qs = qs.filter(repository__registry_id=self.registry_id)
        if self.repository_id is not None:
            qs = qs.filter(repository_id=self.repository_id)
        if self.namespace:
            ns = self.namespace.strip("/")
            qs = qs.filter(Q(repository__name=ns) | Q(repository__name__startswith=ns + "/"))
        if self.tag_glob:
            tags = Tag.objects.filter(
                repository_id=OuterRef("repository_id"),
                removed_at=None,
                name__regex=glob_regex(self.tag_glob),
            )
            qs = qs.filter(
                Q(Exists(tags.filter(manifest_id=OuterRef("manifest_id"))))
                | Q(Exists(tags.filter(manifest__entries__child_id=OuterRef("manifest_id"))))
            )
        if self.labels:
            qs = qs.filter(manifest__labels__contains=dict(self.labels))
        for column, value in self._platform_parts():
            qs = qs.filter(**{f"manifest__{column}": value})
        if self.last_seen_before is not None:
            qs = qs.filter(last_seen__lt=self.last_seen_before)
        if self.last_seen_after is not None:
            qs = qs.filter(last_seen__gte=self.last_seen_after)
        return qs


# Tags are at most 128 characters; a glob naming them needs no more than this.
MAX_GLOB_CHARS = 255
_TAG_CHARACTER = re.compile(r"[A-Za-z0-9_.-]")


def _bracket_member(char: str, pattern: str) -> str:
    if not _TAG_CHARACTER.fullmatch(char):
        raise InvalidRequest(f"tag_glob {pattern!r}: a [...] set holds tag characters (A-Z a-z 0-9 _ . -)")
    return "\\" + char if char in ".-" else char


def _bracket(body: str, pattern: str) -> str:
    """A `[...]` set's members, tag characters or ranges of them (`0-9`), as a PostgreSQL bracket body."""
    if not body:
        raise InvalidRequest(f"tag_glob {pattern!r}: an empty [] set")
    out, i = [], 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low > high:
                raise InvalidRequest(f"tag_glob {pattern!r}: the range {low}-{high} runs backwards")
            out.append(f"{_bracket_member(low, pattern)}-{_bracket_member(high, pattern)}")
            i += 3
        else:
            out.append(_bracket_member(body[i], pattern))
            i += 1
    return "".join(out)


def glob_regex(pattern: str) -> str:
    """A shell glob (`*`, `?`, `[...]`) as an anchored PostgreSQL regular expression. A pattern no tag
    could match the way it reads (too long, a `[...]` set of other characters, a backwards range) is an
    InvalidRequest naming tag_glob, so PostgreSQL is never handed a regex it refuses."""
    if len(pattern) > MAX_GLOB_CHARS:
        raise InvalidRequest(f"tag_glob is at most {MAX_GLOB_CHARS} characters, not {len(pattern)}")
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            negated = body.startswith("!")
            members = _bracket(body[1:] if negated else body, pattern)
            out.append("[" + ("^" if negated else "") + members + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def scope_resolve(
    *,
    registry: str | None = None,
    namespace: str | None = None,
    repository: str | None = None,
    include_untagged: bool = False,
    tag_glob: str | None = None,
    labels: dict[str, str] | None = None,
    platform: str | None = None,
    last_seen_before: datetime | None = None,
    last_seen_after: datetime | None = None,
) -> Scope:
    """Build a scope from user-facing names: a registry by name, host:port or URL; a repository name."""
    if tag_glob:
        glob_regex(tag_glob)  # refused here, not when a list is already streaming
    reg = registry_lookup(registry) if registry else None
    repo_id = None
    if repository:
        qs = Repository.objects.filter(name=repository.strip("/"))
        if reg is not None:
            qs = qs.filter(registry=reg)
        repos = list(qs[:2])
        if not repos:
            raise NotFound(f"no repository named {repository!r}" + (f" in {reg}" if reg else ""))
        if len(repos) > 1:
            raise InvalidRequest(f"repository {repository!r} exists in several registries; name the registry")
        repo_id = repos[0].id
    return Scope(
        registry_id=reg.id if reg else None,
        namespace=namespace or None,
        repository_id=repo_id,
        include_untagged=include_untagged,
        tag_glob=tag_glob or None,
        labels=tuple(sorted((labels or {}).items())),
        platform=platform or None,
        last_seen_before=last_seen_before,
        last_seen_after=last_seen_after,
    )


NAMESPACES_SHOWN = 8  # in the error naming a namespace that does not exist


def namespace_check(*, registry_id: int | None, namespace: str) -> None:
    """`NotFound` naming a few namespaces there are, unless a repository of the registry (or of any,
    without one) is `namespace` or under it. An unknown namespace is an error, not a scope of zeros."""
    ns = namespace.strip("/")
    repositories = Repository.objects.all()
    if registry_id is not None:
        repositories = repositories.filter(registry_id=registry_id)
    if repositories.filter(Q(name=ns) | Q(name__startswith=ns + "/")).exists():
        return
    firsts = (
        repositories.annotate(
            first=Func(F("name"), Value("/"), Value(1), function="split_part", output_field=CharField())
        )
        .values_list("first", flat=True)
        .distinct()
        .order_by("first")[: NAMESPACES_SHOWN + 1]
    )
    shown = list(firsts)
    where = Registry.objects.get(id=registry_id).host if registry_id is not None else "any registry"
    known = ", ".join(shown[:NAMESPACES_SHOWN]) + (", ..." if len(shown) > NAMESPACES_SHOWN else "")
    raise NotFound(f"no namespace {ns!r} in {where}; namespaces: {known or 'none (no repository recorded)'}")


def namespace_rows_scope(scope: Scope) -> tuple[list[int], str] | None:
    """(registries, namespace) when the maintained namespace rows answer `scope` exactly: a plain
    namespace (tagged, no filter) of one registry or of all. The rows count strict path prefixes, so not
    when a repository is named like the namespace itself (it belongs to the scope, not to the rows)."""
    ns = (scope.namespace or "").strip("/")
    if not ns or scope != Scope(registry_id=scope.registry_id, namespace=scope.namespace):
        return None
    if scope.registry_id is not None:
        registries = [scope.registry_id]
    else:
        registries = list(Registry.objects.values_list("id", flat=True))
    if Repository.objects.filter(registry_id__in=registries, name=ns).exists():
        return None
    return registries, ns
