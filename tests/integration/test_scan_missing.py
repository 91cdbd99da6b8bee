"""A scan of a repository or tag the registry does not have: one line, a failed scan, no empty row."""

from __future__ import annotations

import io
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.models import Repository, Scan, Tag
from harness.images import build_demo_registry
from harness.registry import RegistryServer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo_registry(tmp_path_factory):
    registry = RegistryServer(workdir=tmp_path_factory.mktemp("demo-registry")).start()
    build_demo_registry(registry.host)
    try:
        yield registry
    finally:
        registry.cleanup()


def _scan(target: str) -> str:
    out = io.StringIO()
    call_command("scan", target, "--inline", "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_repository_the_registry_does_not_know_leaves_no_row(demo_registry):
    _scan(f"{demo_registry.host}/demo/base")
    before = list(Repository.objects.values_list("name", flat=True))
    with pytest.raises(CommandError) as raised:
        _scan(f"{demo_registry.host}/demo/nope")
    scan_id = Scan.objects.latest("id").id
    assert (
        str(raised.value) == f"scan {scan_id} failed: repository demo/nope not found in {demo_registry.host}"
    )
    assert list(Repository.objects.values_list("name", flat=True)) == before == ["demo/base"]
    scan = Scan.objects.latest("id")
    assert (scan.status, scan.kind, scan.repository) == ("failed", "repository", None)
    assert scan.errors.get().repository == "demo/nope"  # the scan still says what it looked for


def test_a_tag_the_registry_does_not_have_fails_the_scan_and_leaves_no_row(demo_registry):
    with pytest.raises(CommandError, match=f"tag 9.9 not found in {demo_registry.host}/demo/web$"):
        _scan(f"{demo_registry.host}/demo/web:9.9")
    assert not Repository.objects.exists()
    with pytest.raises(CommandError, match=f"tag 1 not found in {demo_registry.host}/demo/nope$"):
        _scan(f"{demo_registry.host}/demo/nope:1")
    assert not Repository.objects.exists()
    assert Scan.objects.filter(status="failed").count() == 2

    # a repository already recorded keeps what was recorded of it
    _scan(f"{demo_registry.host}/demo/web")
    tags = set(Tag.objects.values_list("name", flat=True))
    with pytest.raises(CommandError, match="tag 9.9 not found"):
        _scan(f"{demo_registry.host}/demo/web:9.9")
    assert list(Repository.objects.values_list("name", flat=True)) == ["demo/web"]
    assert set(Tag.objects.filter(removed_at=None).values_list("name", flat=True)) == tags


def test_a_recorded_repository_gone_from_the_registry_is_kept_as_last_seen(tmp_path):
    registry = RegistryServer(workdir=tmp_path / "reg").start()
    try:
        build_demo_registry(registry.host)
        _scan(f"{registry.host}/demo/api")
        tags = list(Tag.objects.values_list("name", flat=True))
        shutil.rmtree(registry.root / "docker" / "registry" / "v2" / "repositories" / "demo" / "api")
        with pytest.raises(CommandError, match=f"repository demo/api not found in {registry.host}"):
            _scan(f"{registry.host}/demo/api")
    finally:
        registry.cleanup()
    assert list(Repository.objects.values_list("name", flat=True)) == ["demo/api"]
    assert list(Tag.objects.filter(removed_at=None).values_list("name", flat=True)) == tags
