"""What one request may send: a body of at most DATA_UPLOAD_MAX_MEMORY_SIZE (413 before anything reads
it), JSON nested at most 32 levels (400), no NUL byte in a path, a query parameter or a cookie, and no
query parameter longer than 1,024 characters (400 naming it)."""

from __future__ import annotations

import json

import pytest

from analytics.models import Registry
from config.middleware import MAX_PARAMETER_CHARS

pytestmark = pytest.mark.django_db

API = "/api/v1/"


def _deep(levels: int) -> str:
    return '{"tags": ' + "[" * levels + "]" * levels + "}"


def test_a_body_over_the_cap_is_a_413_before_it_is_read(world, client_staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body = json.dumps({"url": "http://127.0.0.1:5111", "ca_bundle": "x" * 70_000})
    response = client_staff.post(API + "registries/", body, content_type="application/json")
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert not Registry.objects.filter(url="http://127.0.0.1:5111").exists()
    # forms too, and outside the API (the admin's and the pages' forms)
    response = client_staff.post("/ui/login/", {"username": "x" * 70_000, "password": "y"})
    assert response.status_code == 413 and b"DATA_UPLOAD_MAX_MEMORY_SIZE" in response.content


def test_the_default_body_cap_is_one_mebibyte(settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 1024 * 1024


@pytest.mark.parametrize("path", ["whatif/", "registries/", "scans/"])
def test_json_nested_past_the_bound_is_a_400_not_a_recursion_error(path, world, client_staff):
    response = client_staff.post(API + path, _deep(100_000), content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper than 32 levels" in response.json()["detail"]
    response = client_staff.post(API + path, _deep(33), content_type="application/json")
    assert response.status_code == 400 and "nested deeper" in response.json()["detail"]


def test_json_nesting_inside_strings_does_not_count(world, client_user):
    body = json.dumps({"registry": str(world.registry.id), "namespace": "[{" * 40 + '\\"[' * 40})
    response = client_user.post(API + "whatif/", body, content_type="application/json")
    assert response.status_code == 200 and response.json()["tags"] == 0


def test_nan_and_infinity_are_not_json(world, client_staff):
    url = f"{API}registries/{world.registry.id}/"
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"scan_interval": {constant}}}'
        response = client_staff.patch(url, body, content_type="application/json")
        assert response.status_code == 400 and "JSON parse error" in response.json()["detail"], constant


def test_a_docker_config_nested_too_deep_is_a_400_naming_it(world, client_staff):
    body = {"docker_config": "[" * 20_000 + "]" * 20_000}
    response = client_staff.patch(f"{API}registries/{world.registry.id}/", body, format="json")
    assert response.status_code == 400
    assert "Docker config" in response.json()["detail"]


# --- the URL and the cookies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "layers/sha256:ab%00cd/",
        "layers/sha256:ab%00cd/images/",
        "layers/sha256:ab%00cd/repositories/",
        "layers/%00/images/?format=csv",
    ],
)
def test_a_nul_byte_in_a_layer_digest_in_the_path_is_a_400(path, world, client_user):
    response = client_user.get(API + path)
    assert response.status_code == 400
    assert response.json() == {"detail": "the URL path: a NUL byte is not allowed"}


def test_a_query_parameter_longer_than_the_cap_is_a_400_naming_it(world, client_user):
    for path in ("images/", "summary/", "whatif/", "layers/top/"):
        long = "x" * (MAX_PARAMETER_CHARS + 1)
        response = client_user.get(API + path, {"registry": world.registry.id, "tag_glob": long})
        assert response.status_code == 400, path
        assert "'tag_glob'" in response.json()["detail"] and "1024" in response.json()["detail"]
    response = client_user.get(API + "images/", {"search": "x" * MAX_PARAMETER_CHARS})
    assert response.status_code == 200


def test_a_nul_byte_in_a_cookie_is_a_400_not_a_session_lookup(world, client_user):
    response = client_user.get(API + "registries/", HTTP_COOKIE='sessionid="abcdefgh\\000ijklmnop"')
    assert response.status_code == 400
    assert response.json() == {"detail": "cookie 'sessionid': a NUL byte is not allowed"}


def test_more_query_parameters_than_django_takes_is_a_400_saying_so(world, client_user):
    query = "&".join(f"tags=team/app:v{i}" for i in range(1001))
    response = client_user.get(f"{API}whatif/?registry={world.registry.id}&{query}")
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in response.json()["detail"]
