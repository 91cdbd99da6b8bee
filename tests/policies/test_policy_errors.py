"""Malformed policies are refused with a message naming the line or the JSON path, before any row is read."""

from __future__ import annotations

import json

import pytest

from analytics.errors import InvalidPolicy
from analytics.policies.preview import policy_parse


def ecr(selection: dict, **rule) -> str:
    return json.dumps(
        {"rules": [{"rulePriority": 1, "selection": selection, "action": {"type": "expire"}, **rule}]}
    )


TAGGED = {
    "tagStatus": "tagged",
    "tagPrefixList": ["prod"],
    "countType": "imageCountMoreThan",
    "countNumber": 1,
}
HARBOR_RULE = {
    "template": "latestPushedK",
    "params": {"latestPushedK": 3},
    "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
    "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
}

CASES = [
    # not JSON: the line and column
    ('{\n  "rules": [\n    {"rulePriority": 1,}\n  ]\n}', None, "line 3, column 24: not JSON"),
    ("", None, "the policy is empty"),
    ("[1, 2]", None, "cannot tell this policy's format"),
    # ECR: types, unknown fields, constraints, each at its JSON path
    (
        ecr({**TAGGED, "countNumber": "5"}),
        "ecr",
        "$.rules[0].selection.countNumber: must be a whole number, not a string",
    ),
    (ecr({**TAGGED, "countNumber": 0}), "ecr", "$.rules[0].selection.countNumber: must be from 1"),
    (ecr({**TAGGED, "countNumber": 2.5}), "ecr", "countNumber: must be a whole number, not a fraction"),
    (ecr({**TAGGED, "tagPrefix": ["x"]}), "ecr", "$.rules[0].selection.tagPrefix: unknown field"),
    (ecr(TAGGED, color="red"), "ecr", "$.rules[0].color: unknown field"),
    (
        ecr({**TAGGED, "tagStatus": "some"}),
        "ecr",
        "$.rules[0].selection.tagStatus: must be one of tagged, untagged, any",
    ),
    (ecr({**TAGGED, "tagPrefixList": []}), "ecr", "$.rules[0].selection.tagPrefixList: at least 1"),
    (
        ecr(
            {
                "tagStatus": "untagged",
                "tagPrefixList": ["x"],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            }
        ),
        "ecr",
        "only a tagged rule names tags",
    ),
    (
        ecr({**TAGGED, "countUnit": "days"}),
        "ecr",
        "$.rules[0].selection.countUnit: only a sinceImagePushed rule",
    ),
    (ecr({**TAGGED, "countType": "sinceImagePushed"}), "ecr", "countUnit is required with sinceImagePushed"),
    (
        ecr({**TAGGED, "countType": "sinceImagePushed", "countUnit": "hours"}),
        "ecr",
        "countUnit: must be one of days",
    ),
    (
        ecr(
            {
                "tagStatus": "tagged",
                "tagPatternList": ["a*b*c*d*e*f"],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            }
        ),
        "ecr",
        "tagPatternList[0]: at most 4 wildcards",
    ),
    (
        ecr({**TAGGED, "storageClass": "archive"}),
        "ecr",
        "$.rules[0].selection.storageClass: Layerlens does not evaluate",
    ),
    (
        json.dumps({"rules": [{"rulePriority": 1, "selection": TAGGED, "action": {"type": "delete"}}]}),
        "ecr",
        "$.rules[0].action.type: must be one of expire",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": 1,
                        },
                        "action": {"type": "expire"},
                    },
                    {"rulePriority": 2, "selection": TAGGED, "action": {"type": "expire"}},
                ]
            }
        ),
        "ecr",
        "$.rules[0].rulePriority: a rule with tagStatus any must have the highest",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {"rulePriority": 3, "selection": TAGGED, "action": {"type": "expire"}},
                    {
                        "rulePriority": 3,
                        "selection": {**TAGGED, "tagPrefixList": ["b"]},
                        "action": {"type": "expire"},
                    },
                ]
            }
        ),
        "ecr",
        "$.rules[1].rulePriority: 3 is already the priority of $.rules[0]",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {"rulePriority": 1, "selection": TAGGED, "action": {"type": "expire"}},
                    {"rulePriority": 2, "selection": TAGGED, "action": {"type": "expire"}},
                ]
            }
        ),
        "ecr",
        "$.rules[1].selection.tagPrefixList: the same tag prefixes as $.rules[0]",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": i + 1,
                        "selection": {**TAGGED, "tagPrefixList": [f"p{i}"]},
                        "action": {"type": "expire"},
                    }
                    for i in range(101)
                ]
            }
        ),
        "ecr",
        "$.rules: at most 100 rules",
    ),
    # GitLab: its accepted values, RE2 only, catastrophic shapes refused
    (
        json.dumps({"name_regex": ".*", "keep_n": 3}),
        "gitlab",
        "$.keep_n: GitLab accepts 1, 5, 10, 25, 50, 100, not 3",
    ),
    (
        json.dumps({"name_regex": ".*", "older_than": "3d"}),
        "gitlab",
        "$.older_than: must be one of 7d, 14d, 30d, 90d",
    ),
    (json.dumps({"keep_n": 5}), "gitlab", "name_regex is required"),
    (json.dumps({"name_regex": "(a+)+$"}), "gitlab", "$.name_regex: a repeated group holding a repeat"),
    (json.dumps({"name_regex": "(x|y*)*z"}), "gitlab", "$.name_regex: a repeated group holding a repeat"),
    (
        json.dumps({"name_regex": ".*", "name_regex_keep": "(?<=v)1"}),
        "gitlab",
        "$.name_regex_keep: RE2 (GitLab's regular expressions) has no lookbehind",
    ),
    (json.dumps({"name_regex": r"(a)\1"}), "gitlab", "has no backreferences"),
    (json.dumps({"name_regex": "[a-"}), "gitlab", "$.name_regex: not a regular expression"),
    (json.dumps({"name_regex": "a" * 300}), "gitlab", "$.name_regex: at most 255 characters"),
    (
        json.dumps({"container_expiration_policy_attributes": {"name_regex": ".*", "keep": 1}}),
        "gitlab",
        "$.container_expiration_policy_attributes.keep: unknown field",
    ),
    # Harbor: templates, parameters, selectors
    (
        json.dumps({"rules": [{**HARBOR_RULE, "template": "latestActiveK"}]}),
        "harbor",
        "$.rules[0].template: Layerlens evaluates the templates",
    ),
    (
        json.dumps({"rules": [{**HARBOR_RULE, "params": {"latestPushedK": -1}}]}),
        "harbor",
        "$.rules[0].params.latestPushedK: must be from 0 to 32766",
    ),
    (
        json.dumps({"rules": [{**HARBOR_RULE, "params": {}}]}),
        "harbor",
        "$.rules[0].params: latestPushedK is required",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {
                        **HARBOR_RULE,
                        "tag_selectors": [{"kind": "regex", "decoration": "matches", "pattern": "**"}],
                    }
                ]
            }
        ),
        "harbor",
        "$.rules[0].tag_selectors[0].kind: must be one of doublestar",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {
                        **HARBOR_RULE,
                        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "{a,b"}],
                    }
                ]
            }
        ),
        "harbor",
        "$.rules[0].tag_selectors[0].pattern: { without its }",
    ),
    (
        json.dumps(
            {
                "rules": [
                    {
                        **HARBOR_RULE,
                        "tag_selectors": [
                            {
                                "kind": "doublestar",
                                "decoration": "matches",
                                "pattern": "**",
                                "extras": "{untagged}",
                            }
                        ],
                    }
                ]
            }
        ),
        "harbor",
        "$.rules[0].tag_selectors[0].extras: extras must be JSON text",
    ),
    (json.dumps({"algorithm": "and", "rules": [HARBOR_RULE]}), "harbor", "$.algorithm: must be one of or"),
    (json.dumps({"rules": [HARBOR_RULE] * 16}), "harbor", "$.rules: at most 15 rules"),
    # Layerlens's own rule
    (json.dumps({"keep_newest": -1}), "layerlens", "$.keep_newest: must be from 0"),
    (json.dumps({"tags": ["no-colon"]}), "layerlens", "$.tags[0]: must be repository:tag"),
    (json.dumps({"not_pulled_days": 0}), "layerlens", "$.not_pulled_days: must be from 1"),
    (json.dumps({"keep_newest": 1, "newest_by": "pushed"}), "layerlens", "$.newest_by: must be one of"),
]


@pytest.mark.parametrize(("text", "fmt", "message"), CASES)
def test_malformed_policy_is_refused_naming_its_place(text, fmt, message):
    with pytest.raises(InvalidPolicy) as raised:
        policy_parse(text, format=fmt)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_format_guessed_is_the_format_named():
    for fmt, text in [
        ("ecr", ecr(TAGGED)),
        ("gitlab", json.dumps({"name_regex": ".*", "keep_n": 5})),
        ("harbor", json.dumps({"rules": [HARBOR_RULE]})),
        ("layerlens", json.dumps({"tag_glob": "pr-*"})),
    ]:
        assert policy_parse(text).format == fmt == policy_parse(text, format=fmt).format


def test_a_megabyte_body_is_refused_before_it_is_parsed():
    body = json.dumps({"rules": [], "pad": "x" * (1024 * 1024)})
    with pytest.raises(InvalidPolicy, match="at most 65,536 are read"):
        policy_parse(body)


def test_deep_nesting_is_refused():
    with pytest.raises(InvalidPolicy, match="nested deeper than 8 levels"):
        policy_parse("[" * 50 + "]" * 50)


def test_a_catastrophic_regex_the_shape_check_misses_times_out_as_a_refusal():
    # overlapping alternatives under a repeat: no nested quantifier, exponential all the same; the
    # match's timeout stops it and names the field
    from analytics.policies.patterns import re2_compile, regex_fullmatch

    compiled = re2_compile("(a|a)*c", path="$.name_regex")
    with pytest.raises(InvalidPolicy, match=r"\$\.name_regex: matching 'a+cb' took over 50 ms"):
        regex_fullmatch(compiled, "a" * 60 + "cb", path="$.name_regex")


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        # GitLab's regex pattern examples, anchored at both ends
        (".*", "anything", True),
        ("v.+", "v1.2", True),
        ("v.+", "v", False),
        ("v.+", "xv1", False),
        ("main", "main", True),
        ("main", "mainline", False),
        ("release.*", "release", True),
        ("release.*", "release-1", True),
        ("(?:v.+|main|release.*)", "main", True),
        ("(?:v.+|main|release.*)", "dev", False),
    ],
)
def test_gitlab_regex_examples_match_as_documented(pattern, name, matches):
    from analytics.policies.patterns import re2_compile, regex_fullmatch

    assert regex_fullmatch(re2_compile(pattern, path="$"), name, path="$") is matches
