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
from analytics.policies.rows import (
    Scope,
    Selection,
    bit_sql,
    images_ctes,
    images_select,
    name_bits,
    newest_first_sql,
    tag_names,
)

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

    def select(self, scope: Scope, now: datetime) -> Selection:
        """The repository selectors over the scope's repository names and the tag selectors over its
        distinct tag names, in Python (one bit per rule and per tag selector); the rest in SQL over its
        images: each rule's filter, its template (the latest K pushed or N pulled per repository, by time
        then digest, newest first; pushed or pulled since a cutoff; all), retained when any rule retains."""
        prefix = scope.namespace + "/" if scope.namespace else ""
        repo_ids, repo_bits = [], []
        for repo_id, name in scope.repositories.items():
            name = name[len(prefix) :] if prefix and name.startswith(prefix) else name
            b = "".join("1" if all(s.takes(name) for s in r.repos) else "0" for r in self.rules)
            if "1" in b:
                repo_ids.append(repo_id)
                repo_bits.append(b)
        predicates = [sel.match for rule in self.rules for sel in rule.tags]
        names, bits = name_bits(tag_names(scope), predicates) if repo_ids and predicates else ([], [])
        pulls = any(r.template in ("latestPulledN", "nDaysSinceLastPull") for r in self.rules)
        ctes, params = images_ctes(
            scope,
            width=len(predicates),
            names=names,
            bits=bits,
            pulls=pulls,
            repositories=(repo_ids, repo_bits),
        )
        filters, retains, ties, ranks = [], [], [], []
        bit = 0
        for k, rule in enumerate(self.rules):
            taken = [f"(i.rules & {1 << k}::bigint) <> 0"]  # a bigint: at most MAX_RULES rules
            for sel in rule.tags:
                # excludes: one of its tags does not match (not all do); matches: one of them does
                test = (
                    f"NOT ({bit_sql('i.every_bits', bit, len(predicates))})"
                    if sel.excludes
                    else bit_sql("i.any_bits", bit, len(predicates))
                )
                untagged = "true" if sel.untagged else "false"
                taken.append(f"CASE WHEN i.tagged THEN coalesce({test}, false) ELSE {untagged} END")
                bit += 1
            filters.append(f"coalesce(i.is_image AND {' AND '.join(taken)}, false) AS f{k}")
            n = rule.n or 0
            if rule.template in ("latestPushedK", "latestPulledN"):
                # never pulled: as pulled at the epoch (Harbor's zero time), then by digest
                by = "i.pushed_at" if rule.template == "latestPushedK" else "coalesce(i.pulled_at, 'epoch')"
                tie, rank = newest_first_sql(k, f"f{k}", by)
                ties.append(tie)
                ranks.append(rank)
                retains.append(f"(r.f{k} AND r.rank{k} <= {n})")
            elif rule.template in ("nDaysSinceLastPush", "nDaysSinceLastPull"):
                at = "pushed_at" if rule.template == "nDaysSinceLastPush" else "pulled_at"
                retains.append(f"(r.f{k} AND coalesce(r.{at} >= %(cutoff{k})s, false))")
                params[f"cutoff{k}"] = now - timedelta(days=n)
            else:
                retains.append(f"r.f{k}")
        sql = f"""WITH {ctes},
        filtered AS (
            SELECT i.*, i.rules IS NOT NULL AS taken{"".join(", " + f for f in filters)} FROM images i
        ),
        tied AS (SELECT i.*{"".join(", " + w for w in ties)} FROM filtered i),
        ranked AS (SELECT i.*{"".join(", " + w for w in ranks)} FROM tied i),
        decided AS (
            SELECT r.*, r.is_image AND r.taken AND NOT ({" OR ".join(retains) or "false"}) AS expired
            FROM ranked r
        )"""
        return images_select(scope, sql, params)


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
