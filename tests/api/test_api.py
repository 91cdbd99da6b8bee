"""The REST API over data built by ingest from hand-made records (see conftest for the figures)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import Registry, RepositoryManifest, Scan
from harness import records as f
from tests.api.conftest import PASSWORD

pytestmark = pytest.mark.django_db

API = "/api/v1/"


def _holding(world, repo, record) -> RepositoryManifest:
    return RepositoryManifest.objects.get(repository=repo, manifest__digest=record.digest)


# --- summary ----------------------------------------------------------------------------------------------


def test_summary_of_registry_counts_shared_base_layer_once(world, client_user):
    body = client_user.get(API + "summary/", {"registry": "127.0.0.1:5999"}).json()
    assert {
        k: body[k] for k in ("images", "distinct_layers", "logical_bytes", "stored_bytes", "saved_bytes")
    } == {
        "images": 2,
        "distinct_layers": 3,
        "logical_bytes": 28_200,
        "stored_bytes": 18_200,
        "saved_bytes": 10_000,
    }
    assert body["dedup_ratio"] == pytest.approx(28_200 / 18_200, abs=1e-4)
    assert body["layers_logical_bytes"] == 25_000 and body["layers_stored_bytes"] == 15_000
    assert body["repositories"] == 2 and body["tagged_only"] is True


def test_summary_accepts_registry_by_id_name_and_url_and_namespace(world, client_user):
    for ident in (str(world.registry.id), world.registry.name, "http://127.0.0.1:5999"):
        assert client_user.get(API + "summary/", {"registry": ident}).json()["stored_bytes"] == 18_200
    assert client_user.get(API + "summary/", {"namespace": "team"}).json()["saved_bytes"] == 10_000


def test_summary_of_one_repository_saves_nothing(world, client_user):
    body = client_user.get(API + "summary/", {"repository": "team/app"}).json()
    assert (body["images"], body["logical_bytes"], body["stored_bytes"], body["saved_bytes"]) == (
        1,
        13_500,
        13_500,
        0,
    )
    assert body["dedup_ratio"] == 1.0


def test_summary_of_unknown_registry_is_404_with_detail(world, client_user):
    response = client_user.get(API + "summary/", {"registry": "nowhere:1"})
    assert response.status_code == 404
    assert set(response.json()) == {"detail"} and "nowhere:1" in response.json()["detail"]


# --- images -----------------------------------------------------------------------------------------------


def test_images_list_shared_and_unique_bytes_per_image(world, client_user):
    body = client_user.get(API + "images/", {"registry": world.registry.id, "ordering": "repository"}).json()
    assert body["count"] == 2
    a, b = body["results"]
    assert (a["repository_name"], a["digest"], a["tags"]) == (
        "team/app",
        world.image_a.digest,
        ["1.0", "latest"],
    )
    assert (a["size_bytes"], a["shared_bytes"], a["unique_bytes"]) == (13_500, 10_000, 3_500)
    assert (a["layers_size_bytes"], a["layers_shared_bytes"], a["layers_unique_bytes"]) == (
        12_000,
        10_000,
        2_000,
    )
    assert (b["size_bytes"], b["shared_bytes"], b["unique_bytes"]) == (14_700, 10_000, 4_700)
    assert (a["platform"], a["layer_count"], a["media_type"]) == ("linux/amd64", 2, f.MANIFEST)


def test_images_within_one_repository_share_nothing(world, client_user):
    (a,) = client_user.get(API + "images/", {"repository": "team/app"}).json()["results"]
    assert (a["shared_bytes"], a["unique_bytes"]) == (0, 13_500)


def test_images_filters(world, client_user):
    def digests(**params):
        return [i["digest"] for i in client_user.get(API + "images/", params).json()["results"]]

    assert digests(tag="1.0") == [world.image_a.digest]
    assert digests(digest=world.image_b.digest) == [world.image_b.digest]
    assert digests(architecture="arm64") == []
    assert sorted(digests(layer=world.base.digest)) == sorted([world.image_a.digest, world.image_b.digest])
    assert digests(namespace="other") == []


def test_image_list_query_count_does_not_grow_with_page(world, client_user):
    with CaptureQueriesContext(connection) as few:
        client_user.get(API + "images/", {"page_size": 1})
    with CaptureQueriesContext(connection) as more:
        client_user.get(API + "images/", {"page_size": 50})
    assert len(more) == len(few)


def test_image_detail_has_layers_in_order_with_created_by(world, client_user):
    holding = _holding(world, world.app, world.image_a)
    body = client_user.get(f"{API}images/{holding.id}/").json()
    assert [(x["position"], x["digest"], x["size"]) for x in body["layers"]] == [
        (0, world.base.digest, 10_000),
        (1, f.layer("app", 2_000).digest, 2_000),
    ]
    assert body["layers"][1]["created_by"] == "RUN build a step 1"
    assert body["layers"][0]["diff_id"] == f.digest("diff:base")
    assert body["size_bytes"] == 13_500
    layers = client_user.get(f"{API}images/{holding.id}/layers/").json()
    assert layers["results"] == body["layers"]


def test_image_history_lists_empty_layers_too(world, client_user):
    holding = _holding(world, world.app, world.image_a)
    history = client_user.get(f"{API}images/{holding.id}/history/").json()["results"]
    assert [(h["created_by"], h["empty_layer"], h["layer_digest"], h["size"]) for h in history] == [
        ("RUN build a step 0", False, world.base.digest, 10_000),
        ("ENV A=1", True, None, None),
        ("RUN build a step 1", False, f.layer("app", 2_000).digest, 2_000),
    ]


def test_unknown_image_is_404(world, client_user):
    assert client_user.get(f"{API}images/999999/").status_code == 404


# --- layers -----------------------------------------------------------------------------------------------


def test_layer_ranking_puts_shared_base_first(world, client_user):
    results = client_user.get(API + "layers/").json()["results"]
    assert [(r["digest"], r["images"], r["repositories"], r["saved_bytes"]) for r in results][0] == (
        world.base.digest,
        2,
        2,
        10_000,
    )
    assert {r["digest"] for r in results[1:]} == {f.layer("app", 1).digest, f.layer("web", 1).digest}
    assert all(r["images"] == 1 and r["saved_bytes"] == 0 for r in results[1:])
    by_size = client_user.get(API + "layers/", {"ordering": "-size"}).json()["results"]
    assert [r["size"] for r in by_size] == [10_000, 3_000, 2_000]
    assert [r["digest"] for r in client_user.get(API + "layers/", {"min_images": 2}).json()["results"]] == [
        world.base.digest
    ]


def test_layer_detail_and_images_holding_it(world, client_user):
    detail = client_user.get(f"{API}layers/{world.base.digest}/").json()
    assert (detail["images"], detail["saved_bytes"], detail["created_by"][:9]) == (2, 10_000, "RUN build")
    body = client_user.get(f"{API}layers/{world.base.digest}/images/").json()
    assert body["count"] == 2
    assert {i["repository_name"] for i in body["results"]} == {"team/app", "team/web"}
    assert all(i["shared_bytes"] == 10_000 for i in body["results"])
    app_only = client_user.get(f"{API}layers/{f.layer('app', 1).digest}/images/").json()
    assert [i["digest"] for i in app_only["results"]] == [world.image_a.digest]


# --- registries, repositories, tags -----------------------------------------------------------------------


def test_registry_detail_has_summary_and_hides_password(world, client_staff):
    body = client_staff.get(f"{API}registries/{world.registry.id}/").json()
    assert body["has_password"] is True and body["username"] == "robot"
    assert "password" not in body and "password_encrypted" not in body
    assert body["summary"]["saved_bytes"] == 10_000


def test_staff_creates_registry_with_password_that_is_never_returned(db, client_staff):
    response = client_staff.post(
        API + "registries/",
        {
            "url": "http://127.0.0.1:5998/",
            "username": "u",
            "password": PASSWORD,
            "tracked": True,
            "scan_interval": 3600,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert PASSWORD not in response.content.decode()
    assert (body["url"], body["name"], body["has_password"], body["scan_interval"], body["tracked"]) == (
        "http://127.0.0.1:5998",
        "127.0.0.1:5998",
        True,
        3600,
        True,
    )
    registry = Registry.objects.get(id=body["id"])
    assert registry.get_password() == PASSWORD and PASSWORD not in registry.password_encrypted

    response = client_staff.patch(f"{API}registries/{registry.id}/", {"password": ""}, format="json")
    assert response.status_code == 200 and response.json()["has_password"] is False


def test_registry_rejects_bad_interval(db, client_staff):
    response = client_staff.post(
        API + "registries/", {"url": "http://127.0.0.1:5998", "scan_interval": "soon"}
    )
    assert response.status_code == 400 and "scan_interval" in response.json()


def test_repository_filters_and_staff_patch(world, client_user, client_staff):
    names = [
        r["name"] for r in client_user.get(API + "repositories/", {"namespace": "team"}).json()["results"]
    ]
    assert names == ["team/app", "team/web"]
    assert client_user.get(API + "repositories/", {"namespace": "tea"}).json()["count"] == 0
    assert client_user.patch(f"{API}repositories/{world.app.id}/", {"tracked": True}).status_code == 403
    response = client_staff.patch(
        f"{API}repositories/{world.app.id}/",
        {"tracked": True, "scan_interval": 600, "name": "x"},
        format="json",
    )
    assert response.status_code == 200
    assert (response.json()["tracked"], response.json()["scan_interval"], response.json()["name"]) == (
        True,
        600,
        "team/app",
    )
    assert client_user.get(API + "repositories/", {"tracked": "true"}).json()["count"] == 1


def test_retag_removes_tag_and_records_events(world, client_user):
    f.ingest(world.registry, "team/app", {"1.0": world.image_a})  # "latest" is gone
    current = client_user.get(API + "tags/", {"repository": world.app.id}).json()["results"]
    assert [t["name"] for t in current] == ["1.0"]
    everything = client_user.get(
        API + "tags/", {"repository": world.app.id, "include_removed": "true"}
    ).json()
    removed = [t for t in everything["results"] if t["name"] == "latest"][0]
    assert removed["removed_at"] is not None and removed["digest"] == world.image_a.digest
    events = client_user.get(f"{API}tags/{removed['id']}/events/").json()["results"]
    assert [(e["action"], e["old_digest"], e["new_digest"]) for e in events] == [
        ("removed", world.image_a.digest, ""),
        ("created", "", world.image_a.digest),
    ]
    assert len(client_user.get(API + "tag-events/", {"digest": world.image_b.digest}).json()["results"]) == 1
    assert (
        client_user.get(API + "tags/", {"digest": world.image_b.digest}).json()["results"][0]["name"]
        == "latest"
    )


# --- scans ------------------------------------------------------------------------------------------------


def test_staff_post_scan_is_202_and_enqueued_on_commit(
    world, client_staff, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_staff.post(API + "scans/", {"target": "127.0.0.1:5999/team/app:1.0"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["trigger"], body["tag"], body["repository_name"]) == (
        "tag",
        "queued",
        "api",
        "1.0",
        "team/app",
    )
    assert sent_tasks == [("workers.tasks.scan_repository", [body["id"]])]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_staff.post(API + "scans/", {"target": "http://127.0.0.1:5999"}, format="json")
    assert response.json()["kind"] == "registry"
    assert sent_tasks[-1] == ("workers.tasks.scan_registry", [response.json()["id"]])


def test_bad_scan_target_is_400_with_detail(world, client_staff, sent_tasks):
    response = client_staff.post(API + "scans/", {"target": "not a target!"}, format="json")
    assert response.status_code == 400 and "detail" in response.json()
    assert client_staff.post(API + "scans/", {}, format="json").status_code == 400
    assert sent_tasks == []


def test_scan_detail_lists_errors_and_progress(world, client_user):
    scan = Scan.objects.create(
        kind="registry", registry=world.registry, status="partial", repositories_total=4, repositories_done=1
    )
    scan.errors.create(repository="team/app", reference="broken", kind="DigestMismatch", message="bad digest")
    body = client_user.get(f"{API}scans/{scan.id}/").json()
    assert body["progress"] == 0.25
    assert [(e["reference"], e["kind"]) for e in body["errors"]] == [("broken", "DigestMismatch")]
    assert client_user.get(f"{API}scans/{scan.id}/errors/").json()["count"] == 1
    assert client_user.get(API + "scans/", {"status": "partial"}).json()["count"] == 1
    assert client_user.get(API + "scans/", {"status": "failed"}).json()["count"] == 0


# --- permissions and secrets ------------------------------------------------------------------------------


def test_anonymous_is_forbidden(world, anon_client):
    # no credential: 401 with the challenge to answer (a 403 would tell a client nothing to do)
    for path in ("registries/", "images/", "summary/", "layers/", "scans/"):
        assert anon_client.get(API + path).status_code == 401
    assert anon_client.post(API + "scans/", {"target": "http://127.0.0.1:5999"}).status_code == 401


def test_anonymous_reads_when_enabled_but_never_writes(world, anon_client, settings):
    settings.LAYERLENS_ANONYMOUS_READ = True
    assert anon_client.get(API + "summary/").status_code == 200
    assert anon_client.post(API + "registries/", {"url": "http://127.0.0.1:1"}).status_code == 401


def test_non_staff_cannot_write(world, client_user, sent_tasks):
    assert client_user.post(API + "scans/", {"target": "http://127.0.0.1:5999"}).status_code == 403
    assert client_user.post(API + "registries/", {"url": "http://127.0.0.1:1"}).status_code == 403
    assert client_user.delete(f"{API}registries/{world.registry.id}/").status_code == 403
    assert Scan.objects.count() == 0 and sent_tasks == []


def test_password_never_appears_in_any_response(world, client_staff):
    holding = _holding(world, world.app, world.image_a)
    scan = Scan.objects.create(kind="registry", registry=world.registry)
    paths = [
        "",
        "registries/",
        f"registries/{world.registry.id}/",
        "repositories/",
        f"repositories/{world.app.id}/",
        "tags/",
        "tag-events/",
        "images/",
        f"images/{holding.id}/",
        f"images/{holding.id}/layers/",
        f"images/{holding.id}/history/",
        "layers/",
        f"layers/{world.base.digest}/",
        f"layers/{world.base.digest}/images/",
        "summary/",
        "scans/",
        f"scans/{scan.id}/",
        f"scans/{scan.id}/errors/",
    ]
    secret = world.registry.password_encrypted
    for path in paths:
        response = client_staff.get(API + path)
        assert response.status_code == 200, path
        text = json.dumps(response.json())
        assert PASSWORD not in text and secret not in text and "password_encrypted" not in text, path
        assert '"password"' not in text, path
    schema = client_staff.get("/api/schema/").content.decode()
    assert "password_encrypted" not in schema


def test_registry_delete_by_staff_removes_scanned_rows(world, client_staff):
    assert client_staff.delete(f"{API}registries/{world.registry.id}/").status_code == 204
    assert client_staff.get(API + "images/").json()["count"] == 0


def test_unknown_scope_is_404_on_every_scoped_list(world, client_user):
    for path in ("images/", "layers/", f"layers/{world.base.digest}/images/", "summary/"):
        response = client_user.get(API + path, {"repository": "no/such"})
        assert response.status_code == 404 and "no/such" in response.json()["detail"], path


def test_browsable_api_renders_the_scan_form_for_staff(world, client_staff):
    response = client_staff.get(API + "scans/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and 'name="target"' in response.content.decode()
