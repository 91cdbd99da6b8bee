"""How often a caller may knock: per user, per anonymous address, a tighter rate for what-if and whole-list
CSV exports, counted in the cache every web instance shares (Redis in production)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from analytics.api.throttles import parse_rate

pytestmark = pytest.mark.django_db
API = "/api/v1/"


@pytest.fixture
def rates(settings):
    def set_rates(**given: str) -> None:
        settings.LAYERLENS_THROTTLE_RATES = {"anon": "", "user": "", "expensive": "", **given}

    return set_rates


def test_parse_rate():
    assert (
        parse_rate("120/min") == (120, 60)
        and parse_rate("5/s") == (5, 1)
        and parse_rate("1/day") == (1, 86400)
    )
    assert parse_rate("") is None and parse_rate("0") is None and parse_rate("off") is None
    with pytest.raises(ValueError):
        parse_rate("ten/min")


def test_a_user_over_the_rate_gets_429_with_retry_after(world, client_user, client_staff, rates):
    rates(user="3/min")
    assert [client_user.get(API + "summary/").status_code for _ in range(3)] == [200] * 3
    over = client_user.get(API + "summary/")
    assert over.status_code == 429 and 0 < int(over["Retry-After"]) <= 60
    assert "throttled" in over.json()["detail"].lower()
    assert client_staff.get(API + "summary/").status_code == 200  # each user has their own count


def test_anonymous_callers_are_counted_by_address_and_a_forged_forwarded_for_changes_nothing(
    world, anon_client, rates, settings
):
    settings.LAYERLENS_ANONYMOUS_READ = True
    rates(anon="2/min")
    codes = [
        anon_client.get(
            API + "summary/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}"
        ).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]
    assert anon_client.get(API + "summary/", REMOTE_ADDR="10.9.9.8").status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(world, anon_client, rates, settings):
    settings.LAYERLENS_ANONYMOUS_READ = True
    settings.LAYERLENS_TRUSTED_PROXIES = 1
    rates(anon="1/min")
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    assert anon_client.get(API + "summary/", HTTP_X_FORWARDED_FOR="192.0.2.1", **proxy).status_code == 200
    assert anon_client.get(API + "summary/", HTTP_X_FORWARDED_FOR="192.0.2.1", **proxy).status_code == 429
    assert anon_client.get(API + "summary/", HTTP_X_FORWARDED_FOR="192.0.2.2", **proxy).status_code == 200


def test_whatif_and_whole_list_exports_share_the_expensive_rate(world, client_user, rates):
    rates(user="100/min", expensive="3/min")
    assert (
        client_user.get(
            API + "whatif/", {"registry": world.registry.id, "tags": ["team/app:1.0"]}
        ).status_code
        == 200
    )
    download = client_user.get(API + "images/", {"format": "csv"})
    assert download.status_code == 200
    b"".join(download.streaming_content)  # read to its end, as a client does: its place is given back
    # a JSON list, a named CSV page and a cheap answer are ordinary reads
    for _ in range(3):
        assert client_user.get(API + "images/").status_code == 200
        assert client_user.get(API + "images/", {"format": "csv", "page": 1}).status_code == 200
        assert client_user.get(API + "summary/").status_code == 200
    download = client_user.get(API + "tags/", {"format": "csv"})
    assert download.status_code == 200
    b"".join(download.streaming_content)
    for path, query in (("images/", {"format": "csv"}), ("whatif/", {"registry": world.registry.id})):
        over = client_user.get(API + path, query)
        assert over.status_code == 429 and over.streaming is False and int(over["Retry-After"]) > 0
    assert client_user.get(API + "summary/").status_code == 200


def test_counts_live_in_the_shared_redis_so_every_instance_sees_them(world, client_user, rates, shared_cache):
    client, prefix = shared_cache
    rates(user="2/min")
    assert client_user.get(API + "summary/").status_code == 200
    (key,) = list(client.scan_iter(f"{prefix}:*throttle:user:*"))
    assert int(client.get(key)) == 1
    client.set(key, 2)  # another instance's request in the same window
    assert client_user.get(API + "summary/").status_code == 429


def test_with_the_cache_down_requests_are_served_not_failed(world, client_user, rates, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "analytics.infra.cache.FailOpenRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    }
    rates(user="1/min")
    assert [client_user.get(API + "summary/").status_code for _ in range(3)] == [200] * 3


def _settings_of(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import config.settings as s; print(s.CACHES['default']['BACKEND'], s.LAYERLENS_THROTTLE_RATES)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("LAYERLENS_THROTTLE_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "SECRET_KEY": "x", "DEBUG": "0", **env},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
    )


def test_production_settings_count_in_the_shared_redis_and_refuse_a_bad_rate():
    done = _settings_of({"LAYERLENS_REDIS_URL": "redis://127.0.0.1:6379/10"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("analytics.infra.cache.FailOpenRedisCache")
    assert "'anon': '60/min', 'user': '1200/min', 'expensive': '20/min'" in done.stdout
    bad = _settings_of({"LAYERLENS_THROTTLE_USER": "lots"})
    assert bad.returncode != 0 and "LAYERLENS_THROTTLE_USER" in bad.stderr


def test_the_pages_count_with_the_api_and_their_what_if_is_expensive(world, user, client, rates):
    client.force_login(user)
    rates(user="4/min", expensive="1/min")
    assert client.get("/ui/").status_code == 200
    what = {"registry": world.registry.id, "tags": ["team/app:1.0"]}
    assert client.get("/ui/whatif/", what).status_code == 200
    assert client.get("/ui/whatif/", what).status_code == 429  # a second computation this minute
    assert client.get("/ui/whatif/", {"registry": world.registry.id}).status_code == 200  # the form alone
    api = APIClient()
    api.force_authenticate(user)
    over = api.get(API + "summary/")  # the fifth request of this user this minute
    assert over.status_code == 429 and client.get("/ui/").status_code == 429
    assert int(client.get("/ui/")["Retry-After"]) > 0


# --- costly requests running at once ---------------------------------------------------------------


@pytest.fixture
def costly(settings, rates, monkeypatch):
    from analytics.infra import inflight

    rates()  # no rates: only the places are under test
    monkeypatch.setattr(inflight, "_process_places", None)  # rebuilt from the settings below
    settings.LAYERLENS_COSTLY_PER_CALLER = 1
    settings.LAYERLENS_COSTLY_PER_PROCESS = 4
    return settings


def test_a_caller_runs_one_costly_request_at_a_time_and_a_download_holds_its_place_until_it_ends(
    world, client_user, client_staff, costly
):
    download = client_user.get(API + "images/", {"format": "csv"})
    assert download.status_code == 200 and download.streaming
    second = client_user.post(API + "whatif/", {"repository": "team/app"}, format="json")
    assert second.status_code == 429 and "costly" in second.json()["detail"]
    assert int(second["Retry-After"]) > 0
    # another reader is not held up by it
    assert client_staff.post(API + "whatif/", {"repository": "team/app"}, format="json").status_code == 200
    assert client_user.get(API + "summary/").status_code == 200  # cheap requests are not counted
    b"".join(download.streaming_content)  # the test client closes the response at its end
    assert client_user.post(API + "whatif/", {"repository": "team/app"}, format="json").status_code == 200
    # an answer that is not streamed gives its place back at once
    assert client_user.post(API + "whatif/", {"repository": "team/app"}, format="json").status_code == 200


def test_a_process_running_its_share_of_costly_requests_answers_503(world, client_user, client_staff, costly):
    costly.LAYERLENS_COSTLY_PER_PROCESS = 1
    download = client_user.get(API + "images/", {"format": "csv"})
    assert download.status_code == 200
    busy = client_staff.post(API + "whatif/", {"repository": "team/app"}, format="json")
    assert busy.status_code == 503 and "at once" in busy.json()["detail"] and int(busy["Retry-After"]) > 0
    b"".join(download.streaming_content)
    assert client_staff.post(API + "whatif/", {"repository": "team/app"}, format="json").status_code == 200


def test_login_forms_answer_a_cheap_429_past_the_login_rate_per_address(db, client, settings, rates):
    rates(login="4/min")
    for path in ("/admin/login/", "/ui/login/"):
        assert client.get(path, REMOTE_ADDR="10.1.1.1").status_code == 200
    assert client.post(
        "/ui/login/", {"username": "x", "password": "y"}, REMOTE_ADDR="10.1.1.1"
    ).status_code in (
        200,
        403,
    )
    client.get("/admin/login/", REMOTE_ADDR="10.1.1.1")
    over = client.get("/admin/login/", REMOTE_ADDR="10.1.1.1")
    assert over.status_code == 429 and over["Content-Type"].startswith("text/plain")
    assert int(over["Retry-After"]) > 0 and b"too many login attempts" in over.content
    assert (
        client.post("/ui/login/", {"username": "x", "password": "y"}, REMOTE_ADDR="10.1.1.1").status_code
        == 429
    )
    assert client.get("/admin/login/", REMOTE_ADDR="10.1.1.2").status_code == 200  # per address
    assert client.get("/ui/", REMOTE_ADDR="10.1.1.1").status_code in (200, 302)  # other pages unaffected
