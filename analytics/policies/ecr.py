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
from analytics.policies.rows import Image, PlaceRows, Selection, newest_first

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

    def identifies(self, image: Image) -> bool:
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not image.tags
        if not image.tags:
            return False
        return all(any(t.startswith(p) for t in image.tags) for p in self.prefixes) and all(
            any(match(t) for t in image.tags) for match in self.patterns
        )

    def marks(self, images: list[Image], now: datetime) -> list[Image]:
        if self.count_type == "imageCountMoreThan":
            return newest_first(images)[self.count :]
        cutoff = now - timedelta(days=self.count)
        return [i for i in images if i.pushed_at < cutoff]


@dataclass(frozen=True)
class EcrPolicy:
    rules: tuple[EcrRule, ...]
    format = "ecr"
    reads = "images"  # whose push times it reads
    pull_window = None  # no rule of this format reads pulls

    def select(self, rows: PlaceRows, now: datetime) -> Selection:
        selection = Selection()
        for images in rows.images.values():
            identified: set[tuple[int, int]] = set()
            expired: set[tuple[int, int]] = set()
            for rule in self.rules:
                matched = [i for i in images if rule.identifies(i)]
                for image in rule.marks(matched, now):
                    key = (image.repository_id, image.manifest_id)
                    if key not in identified and key not in expired:
                        expired.add(key)
                        selection.image_remove(image)
                identified.update((i.repository_id, i.manifest_id) for i in matched)
        return selection


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
