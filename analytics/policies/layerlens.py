"""Layerlens's own rule as a policy: the what-if flags (`manage.py whatif`, `/api/v1/whatif/`) as JSON.

    {"tag_glob": "pr-*", "not_seen_days": 30, "not_pulled_days": 90, "keep_newest": 5,
     "newest_by": "first_seen", "tags": ["apps/web:1.0"]}

Filters combine (AND) and `keep_newest` ranks what they leave, exactly as `whatif.rule_tags` does: the
selection is that function's, over the scope the preview is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from analytics.errors import InvalidRequest
from analytics.policies.document import Node
from analytics.policies.rows import Scope, Selection, tags_current
from analytics.selectors import whatif
from analytics.selectors.pulls import MAX_NOT_PULLED_DAYS, MIN_NOT_PULLED_DAYS

FIELDS = ("tag_glob", "not_seen_days", "not_pulled_days", "keep_newest", "newest_by", "tags")


@dataclass(frozen=True)
class LayerlensPolicy:
    rule: whatif.TagRule  # without its place: the preview's scope gives it
    format = "layerlens"
    reads = None

    @property
    def pull_window(self) -> int | None:
        return self.rule.not_pulled_days

    def select(self, scope: Scope, now: datetime) -> Selection:
        rule = replace(
            self.rule,
            registry_id=scope.registry.id,
            namespace=scope.namespace,
            repository_id=scope.repository_id,
        )
        return Selection(
            tag_ids=list(whatif.rule_tags(rule=rule, now=now).values_list("id", flat=True)),
            tags_current=tags_current(scope),
        )


def layerlens_parse(doc: Node) -> LayerlensPolicy:
    doc.obj(allowed=FIELDS)
    values: dict[str, object] = {}
    if doc.has("tag_glob"):
        values["tag_glob"] = doc.get("tag_glob").string(most=200)
    if doc.has("not_seen_days"):
        values["not_seen_days"] = doc.get("not_seen_days").integer(least=0, most=whatif.MAX_NOT_SEEN_DAYS)
    if doc.has("not_pulled_days"):
        values["not_pulled_days"] = doc.get("not_pulled_days").integer(
            least=MIN_NOT_PULLED_DAYS, most=MAX_NOT_PULLED_DAYS
        )
    if doc.has("keep_newest"):
        values["keep_newest"] = doc.get("keep_newest").integer(least=0, most=whatif.MAX_KEEP_NEWEST)
    if doc.has("newest_by"):
        values["newest_by"] = doc.get("newest_by").string(choices=whatif.NEWEST_BY)
    if doc.has("tags"):
        pairs = []
        for item in doc.get("tags").items(most=whatif.MAX_LISTED, what="tags"):
            text = item.string(most=400)
            repository, colon, tag = text.rpartition(":")
            if not colon or not repository or not tag or "/" in tag:
                raise item.fail(f"must be repository:tag, not {text!r}")
            pairs.append((repository, tag))
        values["tags"] = tuple(pairs)
    rule = whatif.TagRule(**values)  # type: ignore[arg-type]
    try:
        whatif.rule_check(rule)
    except InvalidRequest as exc:  # the rule's own checks (a glob no tag could match the way it reads)
        raise doc.fail(str(exc)) from None
    return LayerlensPolicy(rule=rule)
