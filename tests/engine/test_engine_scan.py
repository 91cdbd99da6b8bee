"""Engine scans compared, byte for byte, with the engine's own `/system/df` and `docker image history`."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from django.core.management import call_command
from django.urls import reverse

from analytics.engines import selectors as engine_reports
from analytics.engines import services as engine_services
from analytics.models import EngineHistoryEntry, EngineImage, EngineImageLayer, EngineLayer, EngineScan, Scan

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def scan(engine_images, **kwargs) -> EngineScan:
    result = engine_services.engine_scan_start(endpoint=engine_images.daemon.host, inline=True, **kwargs)
    assert result.status == Scan.Status.SUCCEEDED, (result.message, result.errors)
    return result


def test_engine_scan_matches_system_df_byte_for_byte(engine_images):
    s = scan(engine_images)
    df = engine_images.system_df()
    usage = engine_reports.engine_disk_usage(engine=s.engine)
    ours = {i.id: i for i in usage.images}
    theirs = {i["Id"]: i for i in df["Images"]}
    # the same images: top images only, intermediate images of the classic builder left out
    assert set(ours) == set(theirs)
    assert len(ours) >= 3  # base (two tags, one ID), app, other, and whatever else the session built
    for image_id, row in theirs.items():
        mine = ours[image_id]
        assert (mine.size_bytes, mine.shared_bytes, mine.unique_bytes) == (
            row["Size"],
            row["SharedSize"],
            row["Size"] - row["SharedSize"],
        ), image_id
        assert mine.containers == row["Containers"]
        assert sorted(mine.tags) == sorted(row["RepoTags"] or [])
    assert usage.stored_bytes == df["LayersSize"]
    assert usage.unknown_layers == []
    # the figures this test is about are not trivial: sharing and a container are really there
    app = ours[engine_images.ids["app:1"]]
    assert 0 < app.shared_bytes < app.size_bytes and app.containers == 1
    base = ours[engine_images.ids["base:1"]]
    assert base.unique_bytes == 0 and base.size_bytes == 70_001 + 12_345
    assert usage.saved_bytes == usage.logical_bytes - df["LayersSize"] > 0


def test_engine_history_matches_docker_image_history_row_by_row(engine_images):
    s = scan(engine_images)
    for tag, image_id in engine_images.ids.items():
        cli = engine_images.history(image_id)
        img = EngineImage.objects.get(engine=s.engine, image_id=image_id)
        rows = list(EngineHistoryEntry.objects.filter(image=img).order_by("-position"))  # newest first
        assert len(rows) == len(cli) > 0, tag
        for mine, theirs in zip(rows, cli, strict=True):
            assert mine.row_id == theirs["ID"]
            assert mine.created_by == theirs["CreatedBy"]
            assert mine.comment == theirs["Comment"]
            assert str(mine.size) == theirs["Size"]
            assert mine.created == datetime.fromisoformat(theirs["CreatedAt"].replace("Z", "+00:00"))
        # built here by the classic builder: every row names the local (intermediate) image that made it
        assert rows[0].row_id == image_id and len({r.row_id for r in rows}) > 1


def test_layers_are_recorded_by_chain_id_with_the_engine_layer_sizes(engine_images):
    s = scan(engine_images)
    for image_id in engine_images.ids.values():
        inspect = json.loads(engine_images.daemon.docker("image", "inspect", image_id))[0]
        img = EngineImage.objects.get(engine=s.engine, image_id=image_id)
        layers = list(EngineImageLayer.objects.filter(image=img).select_related("layer").order_by("position"))
        assert [x.layer.diff_id for x in layers] == inspect["RootFS"]["Layers"]
        # the non-empty history rows, oldest first, are the layers' sizes (the empty COPY is a 0-size layer)
        sized = [int(r["Size"]) for r in reversed(engine_images.history(image_id))]
        made = [h.size for h in img.history.order_by("position") if h.empty_layer is False]
        assert made == [x.layer.size for x in layers]
        assert sum(made) == sum(sized)
    app_layers = EngineImage.objects.get(engine=s.engine, image_id=engine_images.ids["app:1"]).layer_count
    assert app_layers == 3 and EngineLayer.objects.filter(size=0).exists()


def test_rescan_writes_the_same_rows_and_figures(engine_images):
    first = scan(engine_images)
    before = engine_reports.engine_disk_usage(engine=first.engine)
    counts = (EngineImage.objects.count(), EngineLayer.objects.count(), EngineHistoryEntry.objects.count())
    second = scan(engine_images)
    assert second.id != first.id and second.engine_id == first.engine_id
    assert (
        EngineImage.objects.count(),
        EngineLayer.objects.count(),
        EngineHistoryEntry.objects.count(),
    ) == counts
    assert engine_reports.engine_disk_usage(engine=second.engine) == before


def test_report_command_prints_the_engine_view(engine_images):
    call_command("scan", f"engine:{engine_images.daemon.host}", "--inline", stdout=io.StringIO())
    out = io.StringIO()
    call_command("report", "--engine", engine_images.daemon.host, "--json", stdout=out)
    report = json.loads(out.getvalue())
    df = engine_images.system_df()
    assert report["stored_bytes"] == df["LayersSize"]
    assert {
        i["id"]: (sorted(i["tags"]), i["size_bytes"], i["shared_bytes"], i["unique_bytes"])
        for i in report["images"]
    } == {
        i["Id"]: (sorted(i["RepoTags"] or []), i["Size"], i["SharedSize"], i["Size"] - i["SharedSize"])
        for i in df["Images"]
    }


def test_engine_pages_render_in_the_admin(engine_images, admin_client):
    s = scan(engine_images)
    image = EngineImage.objects.filter(engine=s.engine).first()
    for name, obj in (("engine", s.engine), ("engineimage", image), ("enginescan", s)):
        assert admin_client.get(reverse(f"admin:analytics_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:analytics_{name}_change", args=[obj.pk])).status_code == 200
    assert admin_client.get(reverse("admin:analytics_engineimage_add")).status_code == 403


def test_engine_api_df_and_fleet(engine_images, admin_client):
    s = scan(engine_images)
    df = engine_images.system_df()
    body = admin_client.get(f"/api/v1/engines/{s.engine_id}/df/").json()
    assert body["stored_bytes"] == df["LayersSize"]
    assert {i["id"]: i["shared_bytes"] for i in body["images"]} == {
        i["Id"]: i["SharedSize"] for i in df["Images"]
    }
    fleet = admin_client.get("/api/v1/fleet/").json()
    assert fleet["nodes"][0]["stored_bytes"] == df["LayersSize"]
    app_top = EngineImage.objects.get(engine=s.engine, image_id=engine_images.ids["app:1"])
    chain = app_top.image_layers.order_by("position").first().layer.chain_id
    assert next(x for x in fleet["layers"] if x["chain_id"] == chain)["images"] >= 3
    started = admin_client.post(
        f"/api/v1/engines/{s.engine_id}/scan/", {"pull": []}, content_type="application/json"
    )
    assert started.status_code == 202 and started.json()["status"] == "queued"
