"""How Docker Hub-shaped a generated database is: its distributions, read back with SQL, beside the targets.

    .venv/bin/python -m bench.shape --database layerlens_gen_check

Targets: layer counts, layer sizes and image sizes are the percentiles of the docker-library/repo-info
sample in bench/hub_sample.py (15 official images, 90 distinct layers); "most layers are referenced by a
single image" is Zhao et al.'s finding (IEEE CLUSTER 2019); the hot-layer cap is the
benchmark's own (up to 100,000 images at one million). Read-only: it never writes to the database.
"""

from __future__ import annotations

import argparse
import sys

from bench.generate import DATABASE, HOT_SHARE, LAYER_TYPE
from bench.hub_sample import IMAGE_SIZES, LAYER_COUNTS, LAYER_SIZES, percentile

PERCENTILES = (0.1, 0.5, 0.9, 0.99)

# Distinct layers referenced by at least one image (attestation blobs are layers of artifacts, not images).
SQL = {
    "layers_per_image": """
        SELECT percentile_cont(%(p)s::float8[]) WITHIN GROUP (ORDER BY layer_count)
        FROM analytics_manifest WHERE kind = 'image'""",
    "layer_size": """
        SELECT percentile_cont(%(p)s::float8[]) WITHIN GROUP (ORDER BY b.size)
        FROM analytics_blob b
        WHERE b.media_type = %(layer)s AND EXISTS (
            SELECT 1 FROM analytics_manifestlayer ml JOIN analytics_manifest m ON m.id = ml.manifest_id
            WHERE ml.blob_id = b.id AND m.kind = 'image')""",
    "image_size": """
        SELECT percentile_cont(%(p)s::float8[]) WITHIN GROUP (ORDER BY layers_size)
        FROM analytics_manifest WHERE kind = 'image'""",
    "sharing": """
        WITH held AS (
            SELECT ml.blob_id, count(DISTINCT ml.manifest_id) AS images
            FROM analytics_manifestlayer ml JOIN analytics_manifest m ON m.id = ml.manifest_id
            WHERE m.kind = 'image' GROUP BY ml.blob_id)
        SELECT count(*), avg((images = 1)::int), max(images),
               (SELECT count(*) FROM analytics_manifest WHERE kind = 'image')
        FROM held""",
}


def measure(conn) -> dict[str, object]:
    """The achieved distributions, each from one SQL statement."""
    args = {"p": list(PERCENTILES), "layer": LAYER_TYPE}
    out: dict[str, object] = {}
    for name in ("layers_per_image", "layer_size", "image_size"):
        out[name] = conn.execute(SQL[name], args).fetchone()[0]
    layers, single, hottest, images = conn.execute(SQL["sharing"]).fetchone()
    out.update(layers=layers, single_share=float(single), hottest=hottest, images=images)
    return out


def _fmt_bytes(v: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if v >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def report(m: dict[str, object]) -> str:
    def row(label: str, got: str, target: str, source: str) -> str:
        return f"| {label} | {got} | {target} | {source} |"

    def pcts(values, fmt) -> str:
        return " / ".join(fmt(v) for v in values)

    sample = "repo-info sample"
    lines = [
        f"{m['images']:,} images, {m['layers']:,} distinct layers held by images",
        "",
        "| measure (p10 / p50 / p90 / p99) | achieved | target | source |",
        "|---|---|---|---|",
        row(
            "layers per image",
            pcts(m["layers_per_image"], lambda v: f"{v:.0f}"),
            pcts([percentile(LAYER_COUNTS, p) for p in PERCENTILES], lambda v: f"{v:.0f}"),
            f"{sample}, 15 images",
        ),
        row(
            "compressed layer size (distinct layers)",
            pcts(m["layer_size"], _fmt_bytes),
            pcts([percentile(LAYER_SIZES, p) for p in PERCENTILES], _fmt_bytes),
            f"{sample}, 90 layers",
        ),
        row(
            "image size (sum of compressed layers)",
            pcts(m["image_size"], _fmt_bytes),
            pcts([percentile(IMAGE_SIZES, p) for p in PERCENTILES], _fmt_bytes),
            f"{sample}, 15 images",
        ),
        row(
            "layers held by exactly one image",
            f"{m['single_share']:.1%}",
            "> 50%",
            'Zhao et al. 2019: "most layers are referenced by a single image"',
        ),
        row(
            "hottest layer's images",
            f"{m['hottest']:,} ({m['hottest'] / max(m['images'], 1):.1%})",
            f"<= {HOT_SHARE:.0%} of images (+ library images)",
            "target: up to 100,000 at 1,000,000",
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args(argv)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{args.database}") as conn:
        conn.read_only = True
        print(report(measure(conn)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
