"""The three pattern languages of the formats, each matched in Python and bounded.

- GitLab's `name_regex` and `name_regex_keep`: RE2 syntax, anchored at both ends (GitLab wraps them in
  `\\A...\\z`). RE2 runs in linear time; Python's engines backtrack, so a pattern is refused up front when it
  uses what RE2 lacks (backreferences, lookaround, atomic groups, possessive quantifiers: GitLab refuses
  those too) or nests an unbounded quantifier inside a quantified group (`(a+)+`, the catastrophic shape;
  RE2 would run it, Layerlens will not risk it), and each match runs under the `regex` module's timeout.
- ECR's `tagPatternList`: literal text with at most four `*` wildcards, matched against the whole tag.
- Harbor's selectors: bmatcuk/doublestar patterns (`*` and `?` within a path segment, `**` across
  segments, `[...]` classes, `{a,b}` alternatives, `\\` escapes), matched against the whole name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import regex

from analytics.errors import InvalidPolicy

MAX_REGEX_CHARS = 255
MATCH_TIMEOUT_SECONDS = 0.05

# RE2 has none of these; each is named in the refusal.
_NOT_RE2 = [
    (re.compile(r"\(\?[=!]"), "lookahead"),
    (re.compile(r"\(\?<[=!]"), "lookbehind"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"\(\?\("), "conditionals"),
    (re.compile(r"\(\?R\)|\(\?\d+\)|\(\?&"), "recursion"),
    (re.compile(r"\(\?P[=>]"), "backreferences"),
    (re.compile(r"\\[1-9]|\\g<|\\k<"), "backreferences"),
    (re.compile(r"(?:[*+?}])\+"), "possessive quantifiers"),
]


def _strip_escapes_and_classes(pattern: str) -> str:
    """The pattern with escaped characters and `[...]` classes replaced by `x`, so that the structure
    check sees only groups and quantifiers."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append("x")
            i += 2
            continue
        if c == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append("x")
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


_QUANTIFIER = re.compile(r"[*+]|\{\d*,\d*\}|\{\d+\}")


def _unbounded(quantifier: str) -> bool:
    if quantifier in ("*", "+"):
        return True
    low, _, high = quantifier.strip("{}").partition(",")
    return "," in quantifier and high == "" or (high.isdigit() and int(high) > 1)


def _nested_quantifier(pattern: str) -> bool:
    """Whether a quantified group holds a quantifier: `(a+)+`, `(x*y)*`, `(?:a|b+){2,}`."""
    text = _strip_escapes_and_classes(pattern)
    stack: list[bool] = []  # per open group: holds a repeating quantifier
    i = 0
    while i < len(text):
        c = text[i]
        if c == "(":
            stack.append(False)
        elif c == ")" and stack:
            inner = stack.pop()
            after = _QUANTIFIER.match(text, i + 1)
            if after and _unbounded(after.group()) and inner:
                return True
            if stack and (inner or (after and _unbounded(after.group()))):
                stack[-1] = True
        else:
            q = _QUANTIFIER.match(text, i)
            if q and stack and _unbounded(q.group()):
                stack[-1] = True
        i += 1
    return False


def re2_compile(pattern: str, *, path: str) -> regex.Pattern:
    """A GitLab (RE2) pattern, anchored at both ends as GitLab anchors it, or InvalidPolicy at `path`."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise InvalidPolicy(f"{path}: at most {MAX_REGEX_CHARS} characters, not {len(pattern)}")
    for shape, name in _NOT_RE2:
        if shape.search(pattern):
            raise InvalidPolicy(f"{path}: RE2 (GitLab's regular expressions) has no {name}: {pattern!r}")
    if _nested_quantifier(pattern):
        raise InvalidPolicy(
            f"{path}: a repeated group holding a repeat ({pattern!r}) can take exponential time to match; "
            "write it without the nested repeat"
        )
    # RE2's \z (end of text) is Python's \Z
    translated = pattern.replace(r"\z", r"\Z")
    try:
        return regex.compile(rf"(?:{translated})\Z", regex.VERSION0)
    except (regex.error, OverflowError) as exc:
        raise InvalidPolicy(f"{path}: not a regular expression: {exc}") from None


def regex_fullmatch(compiled: regex.Pattern, text: str, *, path: str) -> bool:
    try:
        return compiled.match(text, timeout=MATCH_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        raise InvalidPolicy(
            f"{path}: matching {text!r} took over {int(MATCH_TIMEOUT_SECONDS * 1000)} ms; "
            "simplify the pattern"
        ) from None


# --- ECR ---------------------------------------------------------------------------------------------------

ECR_MAX_WILDCARDS = 4


def ecr_pattern(pattern: str, *, path: str) -> Callable[[str], bool]:
    """An ECR tagPatternList entry: `*` matches any run of characters, everything else is literal."""
    if pattern.count("*") > ECR_MAX_WILDCARDS:
        raise InvalidPolicy(
            f"{path}: at most {ECR_MAX_WILDCARDS} wildcards (*) in a pattern, not {pattern.count('*')}"
        )
    compiled = re.compile("".join(".*" if c == "*" else re.escape(c) for c in pattern) + r"\Z", re.DOTALL)
    # at most four `.*` over a 128-character tag: polynomial and small, no timeout needed
    return lambda tag: compiled.match(tag) is not None


# --- Harbor (doublestar) ----------------------------------------------------------------------------------


def doublestar(pattern: str, *, path: str) -> Callable[[str], bool]:
    """A bmatcuk/doublestar pattern as a function of a name. An empty pattern matches everything, as
    Harbor's selector says."""
    if not pattern:
        return lambda name: True
    if len(pattern) > MAX_REGEX_CHARS:
        raise InvalidPolicy(f"{path}: at most {MAX_REGEX_CHARS} characters, not {len(pattern)}")
    out, i, depth = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 == len(pattern):
                raise InvalidPolicy(f"{path}: a pattern cannot end with \\")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise InvalidPolicy(f"{path}: [ without its ] in {pattern!r}")
            body = pattern[i + 1 : end]
            negated = body[:1] in ("^", "!")
            members = re.sub(r"([\\\]\[^])", r"\\\1", body[1:] if negated else body)
            out.append("[" + ("^/" if negated else "") + members + "]")
            i = end
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise InvalidPolicy(f"{path}: {{ without its }} in {pattern!r}")
    try:
        compiled = regex.compile("".join(out) + r"\Z", regex.DOTALL | regex.VERSION0)
    except regex.error as exc:
        raise InvalidPolicy(f"{path}: not a pattern: {exc}") from None
    # no nested repeats, but many stars in a row backtrack polynomially: the same timeout as GitLab's
    return lambda name: regex_fullmatch(compiled, name, path=path)
