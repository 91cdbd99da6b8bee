"""AWS ECR lifecycle policies, as ECR documents them (Amazon ECR User Guide, "Lifecycle policies":
parameters and evaluation rules; "Examples of lifecycle policies").

    {"rules": [{"rulePriority": 1, "description": "...",
                "selection": {"tagStatus": "tagged"|"untagged"|"any",
                              "tagPrefixList": [...], "tagPatternList": [...],
                              "countType": "imageCountMoreThan"|"sinceImagePushed",
                              "countUnit": "days", "countNumber": N},
                "action": {"type": "expire"}}]}

Evaluation, per repository (an image is a manifest with all its tags, or an untagged one):
1. rules in rulePriority order, lowest first; a rule identifies the images its tag requirements match
   (`tagged`: every prefix of tagPrefixList, and every pattern of tagPatternList, matches one of the
   image's tags; `untagged`: no tag; `any`: every image);
2. it marks, among them: past the newest countNumber (imageCountMoreThan: sorted by push time, newest
   first), or those pushed more than countNumber days ago (sinceImagePushed);
3. a marked image is expired unless a rule of higher priority identified it ("an image is expired by
   exactly one or zero rules"; "an image that matches the tagging requirements of a rule cannot be
   expired by a rule with a lower priority"); identified images still count in later rules' numbers.
Validation follows the documented constraints: unique priorities, `any` last, one `untagged` rule, a
tagged rule names prefixes or patterns, an untagged or any rule names none, countUnit only (and always)
with sinceImagePushed, countNumber a positive integer, at most four wildcards per pattern, `expire` only.
ECR's later storage-class rules (`transition`, `storageClass`, `sinceImagePulled`,
`sinceImageTransitioned`) archive rather than delete, or need ECR's own pull record: refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from analytics.errors import InvalidPolicy
from analytics.policies.document import Node
from analytics.policies.patterns import ecr_pattern
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

MAX_RULES = 100
MAX_LIST = 100
MAX_COUNT = 1_000_000
NOT_SUPPORTED = {
    "storageClass": "archive storage classes",
    "sinceImagePulled": "ECR's own record of pulls",
    "sinceImageTransitioned": "archive storage classes",
    "transition": "archive storage classes",
    "targetStorageClass": "archive storage classes",
}


@dataclass(frozen=True)
class EcrRule:
    priority: int
    tag_status: str
    prefixes: tuple[str, ...]
    patterns: tuple[Callable[[str], bool], ...]
    count_type: str
    count: int


@dataclass(frozen=True)
class EcrPolicy:
    rules: tuple[EcrRule, ...]
    format = "ecr"
    reads = "images"  # whose push times it reads
    pull_window = None  # no rule of this format reads pulls

    def select(self, scope: Scope, now: datetime) -> Selection:
        """Each rule's tag requirements over the scope's distinct tag names in Python (one bit per prefix
        and pattern); the rest in SQL over its images: each image's first identifying rule, and whether
        that rule marks it (past the newest countNumber of the images the rule identifies, by push time
        then digest, newest first; or pushed before the cutoff)."""
        predicates: list[Callable[[str], bool]] = []
        for rule in self.rules:
            predicates += [_prefix(p) for p in rule.prefixes]
            predicates += list(rule.patterns)
        names, bits = name_bits(tag_names(scope), predicates) if predicates else ([], [])
        ctes, params = images_ctes(scope, width=len(predicates), names=names, bits=bits)
        identifies, marks, ties, ranks = [], [], [], []
        bit = 0
        for k, rule in enumerate(self.rules):
            if rule.tag_status == "any":
                identifies.append("i.is_image")
            elif rule.tag_status == "untagged":
                identifies.append("i.is_image AND NOT i.tagged")
            else:
                wanted = len(rule.prefixes) + len(rule.patterns)
                taken = " AND ".join(
                    bit_sql("i.any_bits", b, len(predicates)) for b in range(bit, bit + wanted)
                )
                bit += wanted
                identifies.append(f"i.is_image AND i.tagged AND coalesce({taken}, false)")
            if rule.count_type == "imageCountMoreThan":
                tie, rank = newest_first_sql(k, f"id{k}", "i.pushed_at")
                ties.append(tie)
                ranks.append(rank)
                marks.append(f"r.rank{k} > %(count{k})s")
                params[f"count{k}"] = rule.count
            else:
                marks.append(f"r.pushed_at < %(cutoff{k})s")
                params[f"cutoff{k}"] = now - timedelta(days=rule.count)
        ids = ", ".join(f"{sql} AS id{k}" for k, sql in enumerate(identifies))
        first = " ".join(f"WHEN r.id{k} THEN {mark}" for k, mark in enumerate(marks))
        sql = f"""WITH {ctes},
        identified AS (SELECT i.*, {ids} FROM images i),
        tied AS (SELECT i.*{"".join(", " + w for w in ties)} FROM identified i),
        ranked AS (SELECT i.*{"".join(", " + w for w in ranks)} FROM tied i),
        decided AS (SELECT r.*, coalesce(CASE {first} ELSE false END, false) AS expired FROM ranked r)"""
        return images_select(scope, sql, params)


def _prefix(prefix: str) -> Callable[[str], bool]:
    return lambda tag: tag.startswith(prefix)


def _unsupported(node: Node, key: str) -> None:
    if node.has(key):
        raise InvalidPolicy(
            f"{node.get(key).path}: Layerlens does not evaluate ECR rules on {NOT_SUPPORTED[key]}"
        )


def _strings(node: Node) -> list[tuple[str, str]]:
    return [(item.string(most=128), item.path) for item in node.items(most=MAX_LIST, least=1)]


def ecr_parse(doc: Node) -> EcrPolicy:
    doc.obj(allowed=("rules",), required=("rules",))
    rules: list[EcrRule] = []
    seen_priority: dict[int, str] = {}
    prefix_sets: dict[tuple[str, ...], str] = {}
    untagged_rule: str | None = None
    for node in doc.get("rules").items(most=MAX_RULES, least=1, what="rules"):
        for key in NOT_SUPPORTED:
            _unsupported(node, key)
        node.obj(
            allowed=("rulePriority", "description", "selection", "action"),
            required=("rulePriority", "selection", "action"),
        )
        priority = node.get("rulePriority").integer(least=1, most=999_999)
        if priority in seen_priority:
            raise node.get("rulePriority").fail(
                f"{priority} is already the priority of {seen_priority[priority]}; each rule needs its own"
            )
        seen_priority[priority] = node.path
        if node.has("description"):
            node.get("description").string(most=1000, empty=True)
        action = node.get("action")
        for key in NOT_SUPPORTED:
            _unsupported(action, key)
        action.obj(allowed=("type",), required=("type",))
        if action.get("type").string() == "transition":
            _unsupported(action, "transition")
        action.get("type").string(choices=("expire",))

        sel = node.get("selection")
        for key in NOT_SUPPORTED:
            _unsupported(sel, key)
        sel.obj(
            allowed=("tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit", "countNumber"),
            required=("tagStatus", "countType", "countNumber"),
        )
        if sel.get("countType").value == "sinceImagePulled":
            raise InvalidPolicy(
                f"{sel.get('countType').path}: Layerlens does not evaluate ECR rules on "
                f"{NOT_SUPPORTED['sinceImagePulled']}"
            )
        status = sel.get("tagStatus").string(choices=("tagged", "untagged", "any"))
        prefixes = _strings(sel.get("tagPrefixList")) if sel.has("tagPrefixList") else []
        patterns = _strings(sel.get("tagPatternList")) if sel.has("tagPatternList") else []
        if status == "tagged" and not (prefixes or patterns):
            raise sel.fail("a tagged rule names tagPrefixList or tagPatternList")
        if status != "tagged" and (prefixes or patterns):
            which = "tagPrefixList" if prefixes else "tagPatternList"
            raise sel.get(which).fail(f"only a tagged rule names tags; this rule's tagStatus is {status}")
        if status == "untagged":
            if untagged_rule:
                raise sel.get("tagStatus").fail(
                    f"only one rule may select untagged images ({untagged_rule} does)"
                )
            untagged_rule = node.path
        if prefixes:
            key = tuple(sorted(p for p, _ in prefixes))
            if key in prefix_sets:
                raise sel.get("tagPrefixList").fail(
                    f"the same tag prefixes as {prefix_sets[key]}: "
                    "the rules must have a unique set of tag prefixes"
                )
            prefix_sets[key] = node.path
        count_type = sel.get("countType").string(choices=("imageCountMoreThan", "sinceImagePushed"))
        if count_type == "sinceImagePushed":
            if not sel.has("countUnit"):
                raise sel.fail("countUnit is required with sinceImagePushed")
            sel.get("countUnit").string(choices=("days",))
        elif sel.has("countUnit"):
            raise sel.get("countUnit").fail("only a sinceImagePushed rule has a countUnit")
        count = sel.get("countNumber").integer(least=1, most=MAX_COUNT)
        rules.append(
            EcrRule(
                priority=priority,
                tag_status=status,
                prefixes=tuple(p for p, _ in prefixes),
                patterns=tuple(ecr_pattern(p, path=path) for p, path in patterns),
                count_type=count_type,
                count=count,
            )
        )
    rules.sort(key=lambda r: r.priority)
    for rule in rules[:-1]:
        if rule.tag_status == "any":
            raise InvalidPolicy(
                f"{seen_priority[rule.priority]}.rulePriority: a rule with tagStatus any must have the "
                f"highest rulePriority, not {rule.priority} (the highest is {rules[-1].priority})"
            )
    return EcrPolicy(rules=tuple(rules))
