"""`manage.py registry` and the events secret: read from standard input or generated (printed once, by
the command that made it), set or cleared on an existing registry, never in `registry list`; every refusal
one line, exit status 1, nothing written. And `registry events-config`'s refusals."""

from __future__ import annotations

import base64
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.models import Registry
from analytics.registries import registry_upsert

pytestmark = pytest.mark.django_db
SECRET = "cli-Events-Secret-0123456789"
PASSWORD = "cli-Pa55word-never-shown"
URL = "http://127.0.0.1:5994"


def _run(monkeypatch, *args: str, stdin: str = "") -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out = io.StringIO()
    call_command("registry", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _refused(monkeypatch, *args: str, stdin: str = "") -> str:
    with pytest.raises(CommandError) as raised:
        _run(monkeypatch, *args, stdin=stdin)
    message = str(raised.value)
    assert raised.value.returncode == 1 and "\n" not in message and message, message
    return message


def _rows() -> list[tuple]:
    return list(
        Registry.objects.order_by("id").values_list("url", "name", "events_secret_encrypted", "username")
    )


def test_add_reads_the_secret_from_stdin_after_the_password(monkeypatch, capsys):
    out = _run(
        monkeypatch,
        "add",
        URL,
        "--username",
        "bot",
        "--password-stdin",
        "--events-secret-stdin",
        stdin=f"{PASSWORD}\n{SECRET}\n",
    )
    registry = Registry.objects.get(url=URL)
    assert registry.get_password() == PASSWORD and registry.get_events_secret() == SECRET
    err = capsys.readouterr().err
    assert SECRET not in out + err and PASSWORD not in out + err
    assert registry.followed and f"`manage.py registry events-config {registry.id}`" in err

    alone = "http://127.0.0.1:5993"
    _run(monkeypatch, "add", alone, "--events-secret-stdin", stdin=f"{SECRET}\r\n")
    assert Registry.objects.get(url=alone).get_events_secret() == SECRET  # the line's end is not in it

    listing = _run(monkeypatch, "list")
    assert SECRET not in listing and registry.events_secret_encrypted not in listing
    header, *lines = listing.splitlines()
    assert "FOLLOWED" in header and all(" yes " in line for line in lines)


def test_add_with_a_generated_secret_prints_it_once(monkeypatch):
    out = _run(monkeypatch, "add", URL, "--events-secret-generate")
    saved, secret_line = out.splitlines()
    secret = secret_line.removeprefix("events secret: ")
    registry = Registry.objects.get(url=URL)
    assert saved.startswith(f"registry {registry.id} ") and registry.get_events_secret() == secret
    assert len(secret) >= 32 and base64.urlsafe_b64decode(secret + "=")  # 32 random bytes
    again = _run(monkeypatch, "add", URL, "--name", "renamed")  # an update leaves the secret alone
    assert secret not in again and Registry.objects.get(url=URL).get_events_secret() == secret
    other = _run(monkeypatch, "add", "http://127.0.0.1:5993", "--events-secret-generate")
    assert other.splitlines()[1].removeprefix("events secret: ") != secret


def test_events_secret_sets_generates_and_clears_on_an_existing_registry(monkeypatch, capsys):
    registry = registry_upsert(url=URL, name="box")
    for ident in (str(registry.id), "box", URL, "127.0.0.1:5994"):
        _run(monkeypatch, "events-secret", ident, "--stdin", stdin=SECRET + "\n")
        assert Registry.objects.get(id=registry.id).get_events_secret() == SECRET, ident
        _run(monkeypatch, "events-secret", ident, "--clear")
        assert Registry.objects.get(id=registry.id).events_secret_encrypted == "", ident
    capsys.readouterr()
    generated = _run(monkeypatch, "events-secret", "box", "--generate")
    assert generated.count("\n") == 1  # the secret alone on stdout, for SECRET=$(...)
    assert Registry.objects.get(id=registry.id).get_events_secret() == generated.strip()
    assert "followed by events" in capsys.readouterr().err


def test_every_refusal_is_one_line_and_writes_nothing(monkeypatch):
    registry_upsert(url=URL, name="box", username="keep", events_secret=SECRET)
    before = _rows()
    refusals = {
        "too short": (("add", URL, "--events-secret-stdin"), "short\n"),
        "a space": (("add", URL, "--events-secret-stdin"), "has a space 0123456789abc\n"),
        "nothing on stdin": (("add", URL, "--events-secret-stdin", "--username", "changed"), ""),
        "second line missing": (("add", URL, "--password-stdin", "--events-secret-stdin"), "pw\n"),
        "refused with the rest": (
            ("add", URL, "--username", "changed", "--events-secret-stdin", "--track", "--interval", "5"),
            SECRET + "\n",
        ),
        "a new registry refused": (("add", "ftp://nowhere", "--events-secret-generate"), ""),
        "unknown registry": (("events-secret", "nope", "--generate"), ""),
        "empty stdin": (("events-secret", "box", "--stdin"), ""),
        "bad secret": (("events-secret", "box", "--stdin"), "short\n"),
    }
    for name, (args, stdin) in refusals.items():
        message = _refused(monkeypatch, *args, stdin=stdin)
        for line in stdin.splitlines():
            assert line not in message, name
        assert _rows() == before, name
    assert "events secret is 16 to 256 characters" in _refused(
        monkeypatch, "events-secret", "box", "--stdin", stdin="short\n"
    )
    # both ways at once is refused by the parser itself
    with pytest.raises(CommandError):
        _run(monkeypatch, "add", URL, "--events-secret-stdin", "--events-secret-generate")
    with pytest.raises(CommandError):
        _run(monkeypatch, "events-secret", "box", "--stdin", "--clear")
    assert _rows() == before


def test_events_config_refusals_are_one_line(monkeypatch, settings):
    bare = registry_upsert(url=URL, name="bare")
    message = _refused(monkeypatch, "events-config", "bare")
    assert message == (
        f"registry {bare.id} (bare) has no events secret: set one with "
        f"`manage.py registry events-secret {bare.id} --generate` (or --stdin), "
        "or events_secret in the API or the admin"
    )
    assert "no registry 'nope'" in _refused(monkeypatch, "events-config", "nope")
    registry_upsert(url=URL, events_secret=SECRET)
    for bad in (
        "ftp://layerlens.example",
        "layerlens.example",
        "https://u:p@layerlens.example",
        "https://x/?a=1",
    ):
        message = _refused(monkeypatch, "events-config", "bare", "--url", bad)
        assert message.startswith("--url: ") and SECRET not in message, bad
    settings.LAYERLENS_PUBLIC_URL = "https://:99999"
    assert _refused(monkeypatch, "events-config", "bare").startswith("LAYERLENS_PUBLIC_URL: ")
