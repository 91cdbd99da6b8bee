"""The scale benchmark at a small size: the generator loads and every question runs against it."""

import os
import re
import subprocess
import sys

import psycopg
import pytest

from bench.generate import BASES
from bench.queries import TARGETS_MS

DATABASE = f"layerlens_bench_test_{os.getpid()}"


@pytest.fixture
def bench_database():
    yield DATABASE
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def _run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_generator_loads_and_every_question_runs(bench_database):
    out = _run("-m", "bench.generate", "--images", "2000", "--database", bench_database)
    assert "copied" in out and "done in" in out
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{bench_database}") as conn:
        images = conn.execute("SELECT count(*) FROM analytics_manifest WHERE kind = 'image'").fetchone()[0]
        artifacts = conn.execute(
            "SELECT count(*) FROM analytics_manifest WHERE kind = 'artifact'"
        ).fetchone()[0]
        hot = conn.execute("SELECT max(images) FROM analytics_registryblob").fetchone()[0]
        pairs = conn.execute(
            "SELECT count(*) FROM (SELECT diff_id FROM analytics_blob WHERE diff_id <> '' "
            "GROUP BY diff_id HAVING count(*) > 1) d"
        ).fetchone()[0]
        single_use = conn.execute(
            "SELECT avg((images = 1)::int) FROM analytics_registryblob WHERE images > 0"
        ).fetchone()[0]
        # the generator writes each layer's BlobLine itself: it must be the line of the first manifest
        # listing the layer, as ingest finds it, and no listed layer may lack one
        lines, wrong_lines = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE bl.created_by IS DISTINCT FROM (
                   SELECT h.created_by FROM analytics_manifestlayer ml
                   JOIN analytics_manifest m ON m.id = ml.manifest_id
                   JOIN analytics_historyentry h
                       ON h.config_id = m.config_id AND h.layer_position = ml.position
                   WHERE ml.blob_id = bl.blob_id ORDER BY ml.manifest_id, ml.position LIMIT 1))
               FROM analytics_blobline bl"""
        ).fetchone()
        lineless = conn.execute(
            """SELECT count(DISTINCT ml.blob_id) FROM analytics_manifestlayer ml
               WHERE NOT EXISTS (SELECT 1 FROM analytics_blobline bl WHERE bl.blob_id = ml.blob_id)"""
        ).fetchone()[0]
        # the copy runs with triggers off: ManifestBlob must still list every layer and config
        manifest_blobs, unlisted = conn.execute(
            """SELECT (SELECT count(*) FROM analytics_manifestblob), count(*) FROM (
                   SELECT manifest_id, blob_id FROM analytics_manifestlayer
                   UNION SELECT id, config_id FROM analytics_manifest WHERE config_id IS NOT NULL
               ) x
               WHERE NOT EXISTS (SELECT 1 FROM analytics_manifestblob mb
                   WHERE mb.manifest_id = x.manifest_id AND mb.blob_id = x.blob_id)"""
        ).fetchone()
    assert images >= 2000 and artifacts > 0 and hot > 50 and pairs >= 0
    assert manifest_blobs > images and unlisted == 0
    # the benchmark's shape: no layer under more than 10% of the images (the library images of the base
    # stacks aside), and most layers held by one image (Zhao et al. 2019)
    assert hot <= 0.10 * 2000 + len(BASES)
    assert single_use > 0.5
    assert lines > 0 and wrong_lines == 0 and lineless == 0
    shape = _run("-m", "bench.shape", "--database", bench_database)
    for measure in ("layers per image", "compressed layer size", "image size", "exactly one image"):
        assert measure in shape, measure
    # the report counts every image manifest holding the layer, the maintained figure the present ones
    reported = int(re.search(r"hottest layer's images \| ([\d,]+)", shape).group(1).replace(",", ""))
    assert hot <= reported <= 0.10 * images + len(BASES)
    out = _run("-m", "bench.queries", "--database", bench_database, "--runs", "1", "--ingest", "100")
    for name in TARGETS_MS:
        assert out.count(name) == 2, name  # before and after the ingest
    assert "ingested 100 images" in out
