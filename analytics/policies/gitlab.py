"""GitLab container registry cleanup policies, as GitLab documents them ("Reduce container registry
storage": "How the cleanup policy works", the cleanup policy API's valid values).

    {"container_expiration_policy_attributes": {"cadence": "1month", "enabled": true, "keep_n": 1,
      "older_than": "14d", "name_regex": ".*", "name_regex_keep": ".*-main"}}

(or the attributes object alone). Evaluation, per repository, over its tags:
1. the tag named `latest` is excluded;
2. names not matching `name_regex` (tags to expire; `name_regex_delete` is its newer name) are excluded;
3. names matching `name_regex_keep` are excluded (both regexes anchored at both ends, RE2 syntax);
4. (tags without a manifest: Layerlens has none);
5. the rest ordered by creation, newest first, and the `keep_n` newest excluded;
6. tags created within `older_than` are excluded;
what remains is deleted. A tag's creation is its push time (`analytics.policies.rows`). Protected and
immutable tags are GitLab-side settings no policy text carries: not evaluated. `enabled` and `cadence`
are read and checked but change no selection: a preview answers what the policy deletes when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import regex

from analytics.policies.document import Node
from analytics.policies.patterns import re2_compile, regex_fullmatch
from analytics.policies.rows import (
    EVENTS,
    SCANS,
    TAGS_CTES,
    Scope,
    Selection,
    scope_sql,
    selection_fetch,
    tag_names,
)

# The values GitLab's API accepts (its ContainerExpirationPolicy options).
KEEP_N = (1, 5, 10, 25, 50, 100)
OLDER_THAN = {"7d": 7, "14d": 14, "30d": 30, "90d": 90}
CADENCE = ("1d", "7d", "14d", "1month", "3month")
WRAPPER = "container_expiration_policy_attributes"
FIELDS = ("cadence", "enabled", "keep_n", "older_than", "name_regex", "name_regex_delete", "name_regex_keep")


@dataclass(frozen=True)
class GitlabPolicy:
    expire: regex.Pattern
    expire_path: str
    keep: regex.Pattern | None
    keep_path: str
    keep_n: int | None
    older_than_days: int | None
    enabled: bool | None
    format = "gitlab"
    reads = "tags"  # whose push times it reads
    pull_window = None

    def select(self, scope: Scope, now: datetime) -> Selection:
        """Steps 1-3 over the scope's distinct tag names, in Python (RE2 semantics, under a timeout); steps
        5 and 6 in SQL over its tags: ranked per repository by (push time, name), newest first."""
        names = [
            n
            for n in tag_names(scope)
            if n != "latest"
            and regex_fullmatch(self.expire, n, path=self.expire_path)
            and not (self.keep is not None and regex_fullmatch(self.keep, n, path=self.keep_path))
        ]
        where, events, params = scope_sql(scope)
        conditions = ["q.name IS NOT NULL"]
        if self.keep_n is not None:
            conditions.append("q.n > %(keep_n)s")
            params["keep_n"] = self.keep_n
        if self.older_than_days is not None:
            conditions.append("q.pushed_at < %(cutoff)s")
            params["cutoff"] = now - timedelta(days=self.older_than_days)
        params["names"] = names
        sql = f"""WITH {TAGS_CTES.format(where=where, events=events)},
        q AS (
            SELECT t.id, t.pushed_at, t.from_events, x.name,
                row_number() OVER (PARTITION BY t.repository_id, x.name IS NULL
                                   ORDER BY t.pushed_at DESC, t.name COLLATE "C" DESC) AS n
            FROM tags t
            LEFT JOIN (SELECT DISTINCT name FROM unnest(%(names)s::text[]) AS x(name)) x ON x.name = t.name
        )
        SELECT count(*), count(*) FILTER (WHERE q.from_events),
            coalesce(array_agg(q.id) FILTER (WHERE {" AND ".join(conditions)}), '{{}}')
        FROM q"""
        tags, from_events, tag_ids = selection_fetch(sql, params)
        return Selection(
            tag_ids=list(tag_ids),
            tags_current=tags,
            pushed_from={EVENTS: from_events, SCANS: tags - from_events},
        )


def gitlab_parse(doc: Node) -> GitlabPolicy:
    if doc.has(WRAPPER):
        doc.obj(allowed=(WRAPPER,))
        doc = doc.get(WRAPPER)
    doc.obj(allowed=FIELDS)
    if doc.has("name_regex") and doc.has("name_regex_delete"):
        raise doc.get("name_regex_delete").fail("name_regex and name_regex_delete are one setting: give one")
    name = "name_regex_delete" if doc.has("name_regex_delete") else "name_regex"
    if not doc.has(name) or doc.get(name).value in (None, ""):
        raise doc.fail(f"{name} is required: without tags to expire, a GitLab cleanup policy deletes nothing")
    expire = doc.get(name)
    keep_n = older = enabled = None
    if doc.has("keep_n") and doc.get("keep_n").value is not None:
        keep_n = doc.get("keep_n").integer(least=1, most=100)
        if keep_n not in KEEP_N:
            raise doc.get("keep_n").fail(f"GitLab accepts {', '.join(map(str, KEEP_N))}, not {keep_n}")
    if doc.has("older_than") and doc.get("older_than").value is not None:
        older = OLDER_THAN[doc.get("older_than").string(choices=tuple(OLDER_THAN))]
    if doc.has("cadence"):
        doc.get("cadence").string(choices=CADENCE)
    if doc.has("enabled"):
        enabled = doc.get("enabled").boolean()
    keep = doc.get("name_regex_keep")
    keep_set = doc.has("name_regex_keep") and keep.value not in (None, "")
    return GitlabPolicy(
        expire=re2_compile(expire.string(), path=expire.path),
        expire_path=expire.path,
        keep=re2_compile(keep.string(), path=keep.path) if keep_set else None,
        keep_path=keep.path,
        keep_n=keep_n,
        older_than_days=older,
        enabled=enabled,
    )
