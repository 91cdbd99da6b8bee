"""One set of summary fields and one count of manifests, the same in `manage.py report` (table and
`--json`), the API's `summary/` and the admin's registry list; an index's tag is named alone, the kind
in a field of its own."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import RequestFactory

from analytics.models import Registry
from analytics.registries import registry_upsert
from harness import records as f

pytestmark = pytest.mark.django_db

HOST = "127.0.0.1:5995"
BASE = f.layer("multi-base", 5_000)
AMD = f.image("multi-amd64", [BASE, f.layer("amd", 1_000)])
ARM = f.image("multi-arm64", [f.layer("arm-base", 4_000), f.layer("arm", 900)], arch="arm64")
SOLO = f.image("solo", [BASE, f.layer("solo", 700)])


@pytest.fixture
def multi(db):
    """multi/app: tag 1 -> an index of AMD and ARM, tag 2 -> SOLO; other/app: tag latest -> SOLO.

    Held, per repository: multi/app 4 manifests (1 index, 3 images), other/app 1 (1 image)."""
    registry = registry_upsert(url=f"http://{HOST}")
    f.ingest(registry, "multi/app", {"1": f.index("multi", [AMD, ARM]), "2": SOLO}, extra=[AMD, ARM])
    f.ingest(registry, "other/app", {"latest": SOLO})
    return registry


EXPECTED = {"manifests": 5, "indexes": 1, "images": 4, "repositories": 2}


def _report(*args: str) -> str:
    out = io.StringIO()
    call_command("report", "--registry", HOST, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_text_and_json_report_have_the_apis_fields_and_counts(multi, client_user):
    body = json.loads(_report("--json"))
    api = client_user.get("/api/v1/summary/", {"registry": HOST}).json()
    assert body == api
    assert {k: body[k] for k in EXPECTED} == EXPECTED
    table = {line.split()[0]: line.split()[1:] for line in _report().splitlines()}
    assert list(table) == list(body)
    for name, count in EXPECTED.items():
        assert table[name] == [str(count)]


def test_the_admin_lists_the_same_counts(multi, staff):
    from analytics.admin.registries import RegistryAdmin

    request = RequestFactory().get("/admin/analytics/registry/")
    request.user = staff
    model_admin = RegistryAdmin(Registry, admin.site)
    row = model_admin.get_queryset(request).get(pk=multi.pk)
    shown = {
        "manifests": model_admin.manifest_count(row),
        "indexes": model_admin.index_count(row),
        "images": model_admin.image_count(row),
        "repositories": model_admin.repository_count(row),
    }
    assert shown == EXPECTED


def test_an_index_tag_is_a_tag_name_and_its_kind_a_field(multi, client_user):
    rows = client_user.get("/api/v1/images/", {"repository": "multi/app", "registry": HOST}).json()["results"]
    by_digest = {r["digest"]: (r["tags"], r["index_tags"]) for r in rows}
    assert by_digest == {AMD.digest: (["1"], ["1"]), ARM.digest: (["1"], ["1"]), SOLO.digest: (["2"], [])}
