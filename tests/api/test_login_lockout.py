"""Who may knock: API Basic auth is off unless enabled, and every password check (API Basic auth, the
pages' login, the admin's login) is behind a lockout after repeated failures, counted in the shared cache,
which refuses a locked-out caller before any password is hashed."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
API = "/api/v1/"
LIMIT = 3


@pytest.fixture(autouse=True)
def no_login_rate(settings):
    """The lockout is under test here; the login forms' per-address rate, which would answer first, in
    test_throttling."""
    settings.LAYERLENS_THROTTLE_RATES = {**settings.LAYERLENS_THROTTLE_RATES, "login": ""}


@pytest.fixture
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    return settings


@pytest.fixture
def basic_auth(settings):
    settings.LAYERLENS_API_BASIC_AUTH = True
    return settings


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every password hash computed (a check, or the dummy hash for an unknown user)."""
    done: list[str] = []
    for name in ("verify", "encode"):
        original = getattr(PBKDF2PasswordHasher, name)

        def counted(self, *args, _original=original, _name=name):
            done.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(PBKDF2PasswordHasher, name, counted)
    return done


def basic(username: str, password: str, address: str = "127.0.0.1"):
    header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    return APIClient().get(API + "summary/", HTTP_AUTHORIZATION=header, REMOTE_ADDR=address)


def test_basic_auth_is_off_by_default_and_costs_no_password_hash(world, user, hashes):
    response = basic("reader", "reader-pw")
    assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert hashes == []


def test_basic_auth_when_enabled_names_its_challenge(world, user, basic_auth):
    assert basic("reader", "reader-pw").status_code == 200
    wrong = basic("reader", "wrong")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"] == 'Bearer realm="api", Basic realm="api"'


def test_repeated_wrong_basic_passwords_lock_out_before_any_hash(
    world, user, staff, basic_auth, lockout, hashes
):
    assert [basic("reader", f"guess-{i}").status_code for i in range(LIMIT - 1)] == [401] * (LIMIT - 1)
    locking = basic("reader", "guess-last")
    assert locking.status_code == 429
    hashes.clear()
    right = basic("reader", "reader-pw")
    assert right.status_code == 429 and int(right["Retry-After"]) == 900
    assert "too many failed logins" in right.json()["detail"].lower()
    assert hashes == []  # refused before the password was looked at
    # the user name is locked from anywhere; another user from this address is locked out too
    assert basic("reader", "reader-pw", address="192.0.2.7").status_code == 429
    assert basic("boss", "boss-pw").status_code == 429
    assert basic("boss", "boss-pw", address="192.0.2.7").status_code == 200
    # an operator lifts it
    call_command("axes_reset_ip_username", "127.0.0.1", "reader")
    assert basic("reader", "reader-pw").status_code == 200


def test_fifty_wrong_passwords_on_the_pages_login_then_the_right_one_is_refused(world, user, client):
    for i in range(50):
        response = client.post("/ui/login/", {"username": "reader", "password": f"guess-{i}"})
        assert response.status_code in (200, 429)
    response = client.post("/ui/login/", {"username": "reader", "password": "reader-pw"})
    assert response.status_code == 429 and "Too many failed logins" in response.content.decode()
    assert client.get("/ui/").status_code == 302  # still not logged in


def test_the_pages_login_works_below_the_limit(world, user, client, lockout):
    for i in range(LIMIT - 1):
        assert client.post("/ui/login/", {"username": "reader", "password": f"guess-{i}"}).status_code == 200
    assert client.post("/ui/login/", {"username": "reader", "password": "reader-pw"}).status_code == 302
    assert client.get("/ui/").status_code == 200


def test_the_admin_login_locks_out_too(world, staff, client, lockout):
    url = "/admin/login/?next=/admin/"
    for i in range(LIMIT):
        client.post(url, {"username": "boss", "password": f"guess-{i}"})
    response = client.post(url, {"username": "boss", "password": "boss-pw"})
    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302


def test_failures_are_counted_in_the_shared_redis(world, user, basic_auth, lockout, shared_cache):
    redis, prefix = shared_cache
    basic("reader", "wrong")
    counts = [int(redis.get(key)) for key in redis.scan_iter(f"{prefix}:*axes-*")]
    assert sorted(counts) == [1, 1]  # one count for the address, one for the user name
    for key in redis.scan_iter(f"{prefix}:*axes-*"):
        redis.set(key, LIMIT)  # another instance saw the other failures
    assert basic("reader", "reader-pw").status_code == 429
