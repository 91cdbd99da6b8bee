"""The distribution reference grammar and scan targets."""

from __future__ import annotations

import pytest

from workers.registry import Reference, ReferenceError, ScanTarget, parse_reference, parse_scan_target
from workers.registry.reference import validate_digest, validate_repository, validate_tag

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app", Reference(None, "app", None, None)),
        ("team/app", Reference(None, "team/app", None, None)),
        ("team/app:v1", Reference(None, "team/app", "v1", None)),
        ("127.0.0.1:5000/team/app", Reference("127.0.0.1:5000", "team/app", None, None)),
        ("127.0.0.1:5000/team/app:v1.2.3-rc_1", Reference("127.0.0.1:5000", "team/app", "v1.2.3-rc_1", None)),
        (f"127.0.0.1:5000/team/app@{D}", Reference("127.0.0.1:5000", "team/app", None, D)),
        (f"registry.example.com/a/b/c:latest@{D}", Reference("registry.example.com", "a/b/c", "latest", D)),
        ("localhost/app", Reference("localhost", "app", None, None)),
        ("localhost:5000/app:1", Reference("localhost:5000", "app", "1", None)),
        ("[::1]:5000/team/app:v1", Reference("[::1]:5000", "team/app", "v1", None)),
        ("[2001:db8::1]/app", Reference("[2001:db8::1]", "app", None, None)),
        ("Registry.Example.com/app", Reference("Registry.Example.com", "app", None, None)),
        ("my-registry/app", Reference(None, "my-registry/app", None, None)),
        ("a.b/d--e/f_g", Reference("a.b", "d--e/f_g", None, None)),
        # as distribution's splitDockerDomain: an uppercase first component can only be a domain
        ("Team/app", Reference("Team", "app", None, None)),
        ("a/b__c/d---e/f.g", Reference(None, "a/b__c/d---e/f.g", None, None)),
        ("localhost:5000", Reference(None, "localhost", "5000", None)),  # as distribution: name:tag
        ("app:" + "t" * 128, Reference(None, "app", "t" * 128, None)),
        ("app:_private", Reference(None, "app", "_private", None)),
        (f"app@sha512:{'b' * 128}", Reference(None, "app", None, f"sha512:{'b' * 128}")),
    ],
)
def test_valid_references_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_reference_prints_back_as_given() -> None:
    text = f"127.0.0.1:5000/team/app:v1@{D}"
    ref = parse_reference(text)
    assert str(ref) == text
    assert ref.name == "127.0.0.1:5000/team/app"
    assert ref.identifier == D


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("App", "uppercase"),
        ("a.b__c/app", "bad domain name"),
        ("team/App", "uppercase"),
        ("team//app", "empty path component"),
        ("team/app/", "empty path component"),
        ("/team/app", "empty path component"),
        ("team/-app", "bad path component"),
        ("team/app-", "bad path component"),
        ("team/a..b", "bad path component"),
        ("team/a___b", "bad path component"),
        ("team/app:", "invalid tag"),
        ("team/app:.v1", "invalid tag"),
        ("team/app:-v1", "invalid tag"),
        ("team/app:v1+build", "invalid tag"),
        ("team/app:" + "t" * 129, "longer than 128"),
        ("team/app@sha256:abc", "invalid digest"),
        ("team/app@sha256:" + "A" * 64, "lowercase hex"),
        ("team/app@sha256:" + "a" * 63, "64 lowercase hex"),
        ("team/app@sha256:" + "a" * 65, "64 lowercase hex"),
        ("team/app@md5:" + "a" * 32, "unsupported algorithm"),
        ("team/app@" + "a" * 64, "invalid digest"),
        ("a" * 256, "longer than 255"),
        ("registry.example.com/" + "a/" * 120 + "aaaaaaaaaaaaaaaaaaaa", "longer than 255"),
        ("127.0.0.1:0/app", "bad port"),
        ("127.0.0.1:65536/app", "bad port"),
        ("127.0.0.1:port/app:v1", "bad port"),
        ("-bad.example.com/app", "bad domain name"),
        ("[::g]/app", "IPv6"),
        ("[::1/app", "bad IPv6 address"),
        (" team/app", "whitespace"),
        ("team app", "bad path component"),
        ("café/app", "bad path component"),
    ],
)
def test_invalid_references_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_reference(text)
    assert complaint in str(info.value)


def test_name_of_exactly_255_characters_is_accepted() -> None:
    name = "registry.example.com/" + "a" * (255 - len("registry.example.com/"))
    assert parse_reference(name).repository == "a" * 234


def test_validators_return_their_input() -> None:
    assert validate_tag("v1") == "v1"
    assert validate_digest(D) == D
    assert validate_repository("a/b") == "a/b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:5000", ScanTarget("http://127.0.0.1:5000")),
        ("http://127.0.0.1:5000/", ScanTarget("http://127.0.0.1:5000")),
        ("https://registry.example.com", ScanTarget("https://registry.example.com")),
        ("HTTPS://Registry.Example.com", ScanTarget("https://registry.example.com")),
        ("127.0.0.1:5000", ScanTarget("http://127.0.0.1:5000")),
        ("127.1.2.3:5000", ScanTarget("http://127.1.2.3:5000")),
        ("localhost:5000", ScanTarget("http://localhost:5000")),
        ("[::1]:5000", ScanTarget("http://[::1]:5000")),
        ("registry.example.com", ScanTarget("https://registry.example.com")),
        ("registry.example.com:5000", ScanTarget("https://registry.example.com:5000")),
        ("10.0.0.1:5000", ScanTarget("https://10.0.0.1:5000")),
        ("127.0.0.1:5000/team/app", ScanTarget("http://127.0.0.1:5000", "team/app")),
        ("127.0.0.1:5000/team/app:v1", ScanTarget("http://127.0.0.1:5000", "team/app", "v1")),
        (f"127.0.0.1:5000/team/app@{D}", ScanTarget("http://127.0.0.1:5000", "team/app", None, D)),
        ("http://127.0.0.1:5000/team/app", ScanTarget("http://127.0.0.1:5000", "team/app")),
        ("http://127.0.0.1:5000/team/app:v1", ScanTarget("http://127.0.0.1:5000", "team/app", "v1")),
        ("https://myregistry/team/app", ScanTarget("https://myregistry", "team/app")),
        ("[::1]:5000/team/app:v1", ScanTarget("http://[::1]:5000", "team/app", "v1")),
        ("registry.example.com/app", ScanTarget("https://registry.example.com", "app")),
    ],
)
def test_scan_targets(text: str, expected: ScanTarget) -> None:
    assert parse_scan_target(text) == expected


def test_scan_target_kind() -> None:
    assert parse_scan_target("127.0.0.1:5000").kind == "registry"
    assert parse_scan_target("127.0.0.1:5000/a").kind == "repository"
    assert parse_scan_target("127.0.0.1:5000/a:v1").kind == "tag"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("ftp://127.0.0.1:5000", "scheme must be http or https"),
        ("http://", "no registry host"),
        ("team/app", "not a registry host"),
        ("http://127.0.0.1:5000/Team/app", "uppercase"),
        ("127.0.0.1:5000/team/app:bad+tag", "invalid tag"),
        ("127.0.0.1:99999", "bad port"),
        ("http://user:pw@127.0.0.1:5000", "user:password@"),
        ("http://127.0.0.1:5000/?x=1", "no query"),
        ("127.0.0.1:5000//app", "empty path component"),
        ("127.0.0.1:5000/team/app@sha256:1234", "invalid digest"),
    ],
)
def test_invalid_scan_targets(text: str, complaint: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_scan_target(text)
    assert complaint in str(info.value)
