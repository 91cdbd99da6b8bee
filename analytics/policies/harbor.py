"""Harbor tag retention policies, as Harbor documents them ("Create Tag Retention Rules") and evaluates
them (`src/pkg/retention`: the rule templates' evaluators, the doublestar selector).

    {"algorithm": "or",
     "rules": [{"priority": 1, "disabled": false, "action": "retain", "template": "latestPushedK",
                "params": {"latestPushedK": 10},
                "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**",
                                   "extras": "{\\"untagged\\":true}"}],
                "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                    "pattern": "**"}]}}],
     "trigger": {...}, "scope": {"level": "project", "ref": 1}}

Rules say what to retain. Per repository that at least one enabled rule's repository selectors take
(`repoMatches` / `repoExcludes`, against the name within the project: the scope's namespace stripped),
over its artifacts (images: a manifest with all its tags, or an untagged one):
1. each rule filters the artifacts by its tag selectors in turn (`matches`: one of its tags matches;
   `excludes`: one of its tags does not; an untagged artifact passes as `extras.untagged` says, by
   default yes for `matches` and no for `excludes`);
2. its template retains some of what is left: `latestPushedK` (the K most recently pushed),
   `latestPulledN` (the N most recently pulled), `nDaysSinceLastPush` / `nDaysSinceLastPull` (pushed or
   pulled at or after now - N days), `always` (all);
3. an artifact is retained when any rule retains it (the `or` algorithm), with all of its tags; every
   other artifact of the repository is deleted. A repository no rule takes is left alone.
Harbor's other templates (`latestActiveK`, `nothing`, the days-based `lastXDays`) are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from analytics.errors import InvalidPolicy
from analytics.policies.document import Node
from analytics.policies.patterns import doublestar
from analytics.policies.rows import Image, PlaceRows, Selection

# Harbor's own bounds: 15 rules a project; K and N below 2^15 - 1; days at most 20190904.
MAX_RULES = 15
MAX_SELECTORS = 10
TEMPLATES = {
    "latestPushedK": 32_766,
    "latestPulledN": 32_766,
    "nDaysSinceLastPush": 20_190_904,
    "nDaysSinceLastPull": 20_190_904,
    "always": None,
}


@dataclass(frozen=True)
class TagSelector:
    excludes: bool
    match: Callable[[str], bool]
    untagged: bool

    def takes(self, image: Image) -> bool:
        if not image.tags:
            return self.untagged
        if self.excludes:
            return any(not self.match(t) for t in image.tags)
        return any(self.match(t) for t in image.tags)


@dataclass(frozen=True)
class RepoSelector:
    excludes: bool
    match: Callable[[str], bool]

    def takes(self, name: str) -> bool:
        return self.match(name) != self.excludes


@dataclass(frozen=True)
class HarborRule:
    template: str
    n: int | None
    tags: tuple[TagSelector, ...]
    repos: tuple[RepoSelector, ...]

    def retains(self, images: list[Image], now: datetime) -> list[Image]:
        left = images
        for selector in self.tags:
            left = [i for i in left if selector.takes(i)]
        n = self.n or 0
        if self.template == "latestPushedK":
            return sorted(left, key=lambda i: (i.pushed_at, i.digest), reverse=True)[:n]
        if self.template == "latestPulledN":
            pulled = [(i.pulled_at.timestamp() if i.pulled_at else 0.0, i.digest, i) for i in left]
            return [i for _, _, i in sorted(pulled, key=lambda x: (x[0], x[1]), reverse=True)[:n]]
        if self.template == "nDaysSinceLastPush":
            return [i for i in left if i.pushed_at >= now - timedelta(days=n)]
        if self.template == "nDaysSinceLastPull":
            return [i for i in left if i.pulled_at is not None and i.pulled_at >= now - timedelta(days=n)]
        return left  # always


@dataclass(frozen=True)
class HarborPolicy:
    rules: tuple[HarborRule, ...]
    format = "harbor"
    reads = "images"  # whose push times it reads

    @property
    def pull_window(self) -> int | None:
        """None: no rule reads pulls; 0: a rule ranks by pulls (any counted pulls will do); N: a rule asks
        for N days of pulls."""
        windows = [r.n or 0 for r in self.rules if r.template == "nDaysSinceLastPull"]
        if windows:
            return max(windows)
        return 0 if any(r.template == "latestPulledN" for r in self.rules) else None

    def select(self, rows: PlaceRows, now: datetime) -> Selection:
        selection = Selection()
        prefix = rows.namespace + "/" if rows.namespace else ""
        for repo_id, images in rows.images.items():
            name = rows.repositories[repo_id]
            name = name[len(prefix) :] if prefix and name.startswith(prefix) else name
            rules = [r for r in self.rules if all(s.takes(name) for s in r.repos)]
            if not rules:
                continue
            retained = {i.manifest_id for r in rules for i in r.retains(images, now)}
            for image in images:
                if image.manifest_id not in retained:
                    selection.image_remove(image)
        return selection


def _selector(node: Node, *, decorations: tuple[str, ...]) -> tuple[str, Callable[[str], bool], str]:
    node.obj(allowed=("kind", "decoration", "pattern", "extras"), required=("kind", "decoration", "pattern"))
    node.get("kind").string(choices=("doublestar",))
    decoration = node.get("decoration").string(choices=decorations)
    pattern = node.get("pattern")
    match = doublestar(pattern.string(empty=True), path=pattern.path)
    extras = node.get("extras").string(most=1000, empty=True) if node.has("extras") else ""
    return decoration, match, extras


def _untagged(extras: str, default: bool, path: str) -> bool:
    if not extras:
        return default
    try:
        value = json.loads(extras)
    except ValueError:
        raise InvalidPolicy(f'{path}: extras must be JSON text such as {{"untagged":true}}') from None
    if not isinstance(value, dict) or set(value) - {"untagged"}:
        raise InvalidPolicy(f'{path}: extras holds only {{"untagged": true|false}}')
    flag = value.get("untagged", default)
    if not isinstance(flag, bool):
        raise InvalidPolicy(f"{path}.untagged: must be true or false")
    return flag


def harbor_parse(doc: Node) -> HarborPolicy:
    doc.obj(allowed=("id", "algorithm", "rules", "trigger", "scope"), required=("rules",))
    if doc.has("algorithm"):
        doc.get("algorithm").string(choices=("or",))
    if doc.has("scope") and doc.get("scope").value is not None:
        scope = doc.get("scope").obj(allowed=("level", "ref"))
        if scope.has("level"):
            scope.get("level").string(choices=("project",))
    if doc.has("trigger") and doc.get("trigger").value is not None:
        doc.get("trigger").obj(allowed=("kind", "settings", "references"))
    rules: list[HarborRule] = []
    for node in doc.get("rules").items(most=MAX_RULES, what="rules (Harbor's limit per project)"):
        node.obj(
            allowed=(
                "id",
                "priority",
                "disabled",
                "action",
                "template",
                "params",
                "tag_selectors",
                "scope_selectors",
            ),
            required=("template", "tag_selectors", "scope_selectors"),
        )
        if node.has("action"):
            node.get("action").string(choices=("retain",))
        disabled = node.get("disabled").boolean() if node.has("disabled") else False
        template_node = node.get("template")
        template = template_node.string(most=64)
        if template not in TEMPLATES:
            raise template_node.fail(
                f"Layerlens evaluates the templates {', '.join(TEMPLATES)}; not {template!r}"
            )
        n = None
        most = TEMPLATES[template]
        params = node.get("params") if node.has("params") else Node({}, f"{node.path}.params")
        if most is not None:
            params.obj(allowed=(template,), required=(template,))
            n = params.get(template).integer(least=0, most=most)
        elif params.value not in (None, {}):
            params.obj(allowed=())
        tags = []
        for sel in node.get("tag_selectors").items(most=MAX_SELECTORS, least=1, what="selectors"):
            decoration, match, extras = _selector(sel, decorations=("matches", "excludes"))
            excludes = decoration == "excludes"
            tags.append(TagSelector(excludes, match, _untagged(extras, not excludes, f"{sel.path}.extras")))
        scope = node.get("scope_selectors").obj(allowed=("repository",), required=("repository",))
        repos = []
        for sel in scope.get("repository").items(most=MAX_SELECTORS, least=1, what="selectors"):
            decoration, match, _ = _selector(sel, decorations=("repoMatches", "repoExcludes"))
            repos.append(RepoSelector(decoration == "repoExcludes", match))
        if not disabled:
            rules.append(HarborRule(template=template, n=n, tags=tuple(tags), repos=tuple(repos)))
    return HarborPolicy(rules=tuple(rules))
