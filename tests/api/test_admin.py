"""The Django admin: every page renders, scanned data is read-only, "Scan now" enqueues."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from analytics.models import Registry, RepositoryManifest, Scan
from analytics.policies.evaluate import registry_policies_evaluate
from analytics.policies.saved import cleanup_policy_create
from tests.api.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(world, admin_client):
    return admin_client


def test_every_model_is_registered_and_its_pages_render(admin_client_, world):
    Scan.objects.create(kind="registry", registry=world.registry).errors.create(kind="X", message="m")
    cleanup_policy_create(registry=world.registry, name="team", text='{"tag_glob": "*"}', namespace="team")
    registry_policies_evaluate(registry_id=world.registry.id)
    for model in admin.site._registry:
        if model._meta.app_label != "analytics":
            continue
        changelist = reverse(f"admin:analytics_{model._meta.model_name}_changelist")
        response = admin_client_.get(changelist, {"q": "team"})
        assert response.status_code == 200, changelist
        assert PASSWORD not in response.content.decode()
        obj = model.objects.first()
        if obj is not None:
            change = reverse(f"admin:analytics_{model._meta.model_name}_change", args=[obj.pk])
            page = admin_client_.get(change)
            assert page.status_code == 200, change
            assert PASSWORD not in page.content.decode()
            assert world.registry.password_encrypted not in page.content.decode()
    models = {m.__name__ for m in admin.site._registry if m._meta.app_label == "analytics"}
    # 12 registry models, Engine, EngineImage, EngineScan, ApiToken, CleanupPolicy and PolicyEvaluation
    assert len(models) == 18


def test_scanned_data_cannot_be_added_or_changed(admin_client_, world):
    holding = RepositoryManifest.objects.first()
    assert admin_client_.get(reverse("admin:analytics_repositorymanifest_add")).status_code == 403
    response = admin_client_.post(reverse("admin:analytics_repositorymanifest_change", args=[holding.pk]), {})
    assert response.status_code == 403


def test_registry_password_is_write_only_in_the_form(admin_client_, world):
    url = reverse("admin:analytics_registry_change", args=[world.registry.pk])
    data = {
        "name": "renamed",
        "url": world.registry.url,
        "username": "robot",
        "ca_bundle": "",
        "password": "",
    }
    assert admin_client_.post(url, data).status_code == 302
    world.registry.refresh_from_db()
    assert world.registry.name == "renamed" and world.registry.get_password() == PASSWORD  # kept
    admin_client_.post(url, {**data, "password": "new-one"})
    world.registry.refresh_from_db()
    assert world.registry.get_password() == "new-one"


def test_scan_now_action_enqueues_one_scan_per_row(
    admin_client_, world, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            reverse("admin:analytics_repository_changelist"),
            {"action": "scan_now", "_selected_action": [world.app.pk, world.web.pk]},
            follow=True,
        )
    scans = list(Scan.objects.order_by("id"))
    assert [(s.kind, s.trigger, s.repository.name) for s in scans] == [
        ("repository", "admin", "team/app"),
        ("repository", "admin", "team/web"),
    ]
    assert f"Scan {scans[0].id} of" in response.content.decode()
    assert sorted(args[0] for _, args in sent_tasks) == [s.id for s in scans]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client_.post(
            reverse("admin:analytics_registry_changelist"),
            {"action": "scan_now", "_selected_action": [world.registry.pk]},
        )
    assert sent_tasks[-1][0] == "workers.tasks.scan_registry"
    assert Registry.objects.count() == 1
