"""Sizes for people follow one rule everywhere, docker's (go-units `HumanSizeWithPrecision(size, 3)`:
powers of 1000, kB/MB/GB): the Python formatter, the charts' JavaScript, the CLI report and the pages."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from analytics.infra.units import human_size
from analytics.models import RepositoryManifest
from analytics.registries import registry_upsert
from harness import records as f

# go-units' own TestHumanSize values, at the precision `docker images` uses (3), and docker's unit
# spelling; our text puts a space between number and unit.
GO_UNITS = [
    (0, "0B"),
    (999, "999B"),
    (1000, "1kB"),
    (1024, "1.02kB"),
    (1_000_000, "1MB"),
    (1_048_576, "1.05MB"),
    (2_000_000, "2MB"),
    (3_420_000_000, "3.42GB"),
    (5_372_000_000_000, "5.37TB"),
    (2_220_000_000_000_000, "2.22PB"),
    (4_803_176, "4.8MB"),
    (28_200, "28.2kB"),
    (77_870_000, "77.9MB"),
]
IMAGE_BYTES = 4_803_176


@pytest.mark.parametrize(("n", "docker"), GO_UNITS)
def test_python_sizes_are_dockers(n, docker):
    number, unit = human_size(n).split(" ")
    assert number + unit == docker


def test_a_rounding_up_to_1000_moves_to_the_next_unit():
    # go-units would print "1e+03kB"
    assert human_size(999_999) == "1 MB"
    assert human_size(None) == ""


def test_the_charts_javascript_has_the_same_rule():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("no node")
    script = Path(settings.BASE_DIR) / "analytics" / "static" / "web" / "sizes.js"
    values = [n for n, _ in GO_UNITS] + [999_999, 2_500_000, 300_000]
    out = subprocess.run(
        [
            node,
            "-e",
            f"const s = require({json.dumps(str(script))}); "
            f"console.log(JSON.stringify({json.dumps(values)}.map(s.human)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert json.loads(out) == [human_size(n) for n in values]


@pytest.fixture
def one_image(db):
    """One image of IMAGE_BYTES in all: manifest 500 + config 1000 + one layer."""
    registry = registry_upsert(url="http://127.0.0.1:5996")
    image = f.image("sized", [f.layer("big", IMAGE_BYTES - 1500)], config_size=1000, manifest_size=500)
    repository = f.ingest(registry, "sized/app", {"1.0": image})
    return RepositoryManifest.objects.get(repository=repository)


def test_the_report_prints_an_images_size_as_docker_does(one_image):
    out = io.StringIO()
    call_command("report", "--repository", "sized/app", stdout=out, stderr=io.StringIO())
    [logical] = [line for line in out.getvalue().splitlines() if line.startswith("logical_bytes ")]
    assert logical.split()[1:] == ["4.8", "MB", f"{IMAGE_BYTES:,}", "B"]


def test_the_image_page_prints_its_size_as_docker_does(one_image, client):
    client.force_login(get_user_model().objects.create_user("sizes", password="pw-sizes"))
    body = client.get(f"/ui/images/{one_image.id}/").content.decode()
    assert "4.8 MB in all" in body
    assert "4.6 MB" not in body and "MiB" not in body
