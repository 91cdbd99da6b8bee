"""The exception tree: messages, transience, and surviving a trip through pickle (Celery)."""

from __future__ import annotations

import pickle

import pytest

from workers.registry import errors


def test_message_names_registry_repository_and_reference() -> None:
    exc = errors.NotFoundError(
        "HTTP 404 MANIFEST_UNKNOWN",
        status=404,
        code="MANIFEST_UNKNOWN",
        registry="http://127.0.0.1:5000",
        repository="team/app",
        reference="v1",
    )
    assert str(exc) == "http://127.0.0.1:5000/team/app:v1: HTTP 404 MANIFEST_UNKNOWN"
    digest = "sha256:" + "a" * 64
    assert errors.describe("http://r", "team/app", digest) == f"http://r/team/app@{digest}"
    assert str(errors.ManifestError("bad")) == "bad"


def test_locate_fills_in_what_a_parser_did_not_know() -> None:
    exc = errors.ManifestError("malformed manifest: not JSON")
    exc.locate(registry="http://r", repository="a", reference="v1")
    assert str(exc) == "http://r/a:v1: malformed manifest: not JSON"


@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [
        (401, errors.UnauthorizedError, False),
        (403, errors.ForbiddenError, False),
        (404, errors.NotFoundError, False),
        (408, errors.HTTPStatusError, True),
        (429, errors.HTTPStatusError, True),
        (500, errors.HTTPStatusError, True),
        (503, errors.HTTPStatusError, True),
        (400, errors.HTTPStatusError, False),
    ],
)
def test_transience_follows_the_status(
    status: int, cls: type[errors.HTTPStatusError], transient: bool
) -> None:
    assert cls("x", status=status).transient is transient


def test_tree() -> None:
    assert issubclass(errors.DigestMismatchError, errors.ManifestError)
    for cls in (errors.UnauthorizedError, errors.ForbiddenError, errors.NotFoundError):
        assert issubclass(cls, errors.HTTPStatusError)
    for cls in (
        errors.ReferenceError,
        errors.TransportError,
        errors.HTTPStatusError,
        errors.ProtocolError,
        errors.ManifestError,
    ):
        assert issubclass(cls, errors.RegistryError)
    assert errors.TransportError("down").transient and not errors.ManifestError("x").transient


@pytest.mark.parametrize(
    "exc",
    [
        errors.HTTPStatusError(
            "HTTP 503", status=503, code="UNAVAILABLE", retry_after=3.0, registry="http://r"
        ),
        errors.NotFoundError("HTTP 404", status=404, code="NAME_UNKNOWN", repository="a"),
        errors.DigestMismatchError("mismatch", expected="sha256:" + "a" * 64, actual="sha256:" + "b" * 64),
        errors.TransportError("timed out", registry="http://r"),
        errors.ReferenceError("invalid tag"),
    ],
)
def test_errors_survive_pickle(exc: errors.RegistryError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.__dict__ == exc.__dict__
