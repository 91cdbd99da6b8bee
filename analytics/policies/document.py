"""A policy's text read as JSON, bounded, and walked field by field so that every refusal names its place.

Every format Layerlens reads is JSON (ECR's lifecycle policy text, GitLab's
`container_expiration_policy_attributes`, Harbor's retention policy, Layerlens's own rule). A document
that is not JSON is refused with the line and column the parser stopped at; a field of the wrong type,
an unknown field or a value out of range is refused with its JSON path (`$.rules[1].selection.countNumber`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from analytics.errors import InvalidPolicy
from analytics.infra import jsontext

# A real policy is a few hundred bytes (Harbor's 15 rules, ECR's longest examples: under 4 kB); a body
# past this is refused before it is parsed. Nesting is bounded by `jsontext` too.
MAX_POLICY_BYTES = 64 * 1024
MAX_DEPTH = 8


def document_read(text: str | bytes) -> object:
    """The policy's JSON value, or InvalidPolicy naming the line and column where reading stopped."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_POLICY_BYTES:
        raise InvalidPolicy(f"the policy is {size:,} bytes; at most {MAX_POLICY_BYTES:,} are read")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPolicy(f"the policy is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise InvalidPolicy("the policy is empty")
    try:
        return jsontext.loads(text, max_depth=MAX_DEPTH)
    except json.JSONDecodeError as exc:
        raise InvalidPolicy(f"line {exc.lineno}, column {exc.colno}: not JSON: {exc.msg}") from None
    except jsontext.TooDeep:
        raise InvalidPolicy(f"the policy is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # NaN, Infinity
        raise InvalidPolicy(f"not JSON: {exc}") from None


_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a whole number",
    bool: "true or false",
}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a fraction"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Node:
    """A value of the document and its JSON path; the typed getters refuse with that path."""

    value: object
    path: str = "$"

    def fail(self, message: str) -> InvalidPolicy:
        return InvalidPolicy(f"{self.path}: {message}")

    def obj(self, *, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> Node:
        """This node as an object with only `allowed` keys, every one of `required` present."""
        if not isinstance(self.value, dict):
            raise self.fail(f"must be an object, not {_kind(self.value)}")
        unknown = [k for k in self.value if k not in allowed]
        if unknown:
            raise InvalidPolicy(f"{self.path}.{unknown[0]}: unknown field (known here: {', '.join(allowed)})")
        for key in required:
            if key not in self.value:
                raise self.fail(f"{key} is required")
        return self

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def get(self, key: str) -> Node:
        assert isinstance(self.value, dict)
        return Node(self.value.get(key), f"{self.path}.{key}")

    def items(self, *, most: int, least: int = 0, what: str = "entries") -> Iterator[Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, not {_kind(self.value)}")
        if len(self.value) > most:
            raise self.fail(f"at most {most} {what}, not {len(self.value)}")
        if len(self.value) < least:
            raise self.fail(f"at least {least} {what}")
        for i, item in enumerate(self.value):
            yield Node(item, f"{self.path}[{i}]")

    def string(self, *, most: int = 255, empty: bool = False, choices: tuple[str, ...] = ()) -> str:
        if not isinstance(self.value, str):
            raise self.fail(f"must be a string, not {_kind(self.value)}")
        if choices and self.value not in choices:
            raise self.fail(f"must be one of {', '.join(choices)}, not {self.value!r}")
        if not empty and not self.value:
            raise self.fail("must not be empty")
        if len(self.value) > most:
            raise self.fail(f"at most {most} characters, not {len(self.value)}")
        return self.value

    def integer(self, *, least: int, most: int) -> int:
        # JSON's 5 and 5.0 differ in text: a policy saying 5.0 is refused as a fraction, as the systems'
        # own schemas refuse it
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"must be a whole number, not {_kind(self.value)}")
        if not least <= self.value <= most:
            raise self.fail(f"must be from {least} to {most}, not {self.value}")
        return self.value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"must be true or false, not {_kind(self.value)}")
        return self.value
