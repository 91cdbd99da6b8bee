"""A synthetic registry database shaped like Docker Hub, at up to a million images.

    .venv/bin/python -m bench.generate --images 1000000 --seed 1   # into layerlens_bench_scale

Layer counts and sizes come from a measured Docker Hub sample (bench/hub_sample.py), base stacks from
real official images with per-stack quotas (no layer under more than `HOT_SHARE` of the images), the
long tail from Zhao et al. (IEEE CLUSTER 2019); bench/README.md says where each figure comes from, and
`python -m bench.shape --database X` prints the achieved shape beside it.

Rows are streamed with PostgreSQL COPY (psycopg `cursor.copy`), one connection per table, with
`session_replication_role = replica` (FK and other triggers off: the data is consistent by construction);
`ManifestBlob`, which triggers keep, is filled by its migration's statement after the copy, and the
maintained figures are rebuilt set-based at the end, as the migration does. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.hub_sample import LAYER_COUNTS, LAYER_SIZES

DATABASE = "layerlens_bench_scale"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
MB = 1_000_000
NULL = "\\N"  # COPY text format

# Base stacks: (name, compressed layer sizes in bytes, parent stack, image quota as a share of all images).
# Sizes are the linux/amd64 layers of the official image in bench/hub_sample.py (the stack's own layers,
# its parent's removed). Each root's subtree of quotas sums to <= HOT_SHARE, so no base layer is held by
# more than HOT_SHARE of the images (100,000 at a million) plus the library images themselves. The 32-byte
# empty layer several stacks end with is one blob on Docker Hub; here each stack has its own, so it does
# not become a cross-family hot layer.
HOT_SHARE = 0.10
BASES: list[tuple[str, list[int], str | None, float]] = [
    ("debian-bookworm-slim", [28237639], None, 0.02),  # php:8-apache-bookworm's bottom layer
    ("php", [227, 104345776, 227, 20142182, 430, 483, 14539803, 491, 15144180, 2459, 245, 892, 32],
     "debian-bookworm-slim", 0.045),
    ("cassandra", [1116, 15677851, 4271551, 47509943, 128, 73947004, 1224], "debian-bookworm-slim", 0.018),
    ("memcached", [1110, 136706, 2285876, 284, 122], "debian-bookworm-slim", 0.015),
    ("debian-trixie-slim", [29830418], None, 0.015),
    ("redis", [1101, 824, 25639861, 97, 32, 2109], "debian-trixie-slim", 0.02),
    ("postgres", [1167, 6443022, 1256766, 8203833, 1311722, 116, 3138, 115397538, 19418, 128, 6108, 186],
     "debian-trixie-slim", 0.02),
    ("httpd", [145, 32, 2008639, 13453247, 292], "debian-trixie-slim", 0.01),
    ("nginx", [33325076, 626, 955, 403, 1210, 1397], "debian-trixie-slim", 0.03),
    ("debian-trixie", [49312572], None, 0.008),
    ("buildpack-deps-scm", [25638468, 67792989], "debian-trixie", 0.004),
    ("golang", [102272980, 67288392, 127, 32], "buildpack-deps-scm", 0.02),
    ("buildpack-deps", [236338551], "buildpack-deps-scm", 0.004),
    ("python", [6092327, 29758423, 250], "buildpack-deps", 0.03),
    ("node", [3329, 63411295, 446], "buildpack-deps", 0.025),
    ("pypy", [2976797, 34178705], "buildpack-deps", 0.004),
    ("alpine", [3849738], None, 0.08),
    ("traefik", [416269, 50943596, 370], "alpine", 0.015),
    ("ubuntu", [41568275, 389], None, 0.06),
    ("eclipse-temurin", [22368066, 92756921, 32, 2464], "ubuntu", 0.035),
]  # fmt: skip


def _subtree_shares() -> dict[str, float]:
    """Share of all images that hold each base layer: the stack's own quota plus its descendants'."""
    held = {name: share for name, _, _, share in BASES}
    parents = {name: parent for name, _, parent, _ in BASES}
    for name, _, _, share in BASES:
        parent = parents[name]
        while parent:
            held[parent] += share
            parent = parents[parent]
    return held


assert max(_subtree_shares().values()) <= HOT_SHARE, "a base layer would exceed the hot-layer cap"

INSTRUCTIONS = [
    "/bin/sh -c apt-get update && apt-get install -y --no-install-recommends {p}",
    "/bin/sh -c pip install --no-cache-dir {p}",
    "/bin/sh -c npm ci --omit=dev # {p}",
    "COPY dir:{p} in /app",
    "/bin/sh -c make -j4 install # {p}",
    "ADD {p}.tar.gz /opt/",
    "/bin/sh -c apk add --no-cache {p}",
]
PACKAGES = [f"pkg{i}" for i in range(40)]


def from_sample(rng: random.Random, sorted_sample: list[int], *, log: bool) -> float:
    """Draw from the sample's empirical distribution: a uniform rank, interpolated between neighbours
    (geometrically for sizes, which span 32 B to 236 MB)."""
    rank = rng.random() * (len(sorted_sample) - 1)
    i = int(rank)
    lo, hi = sorted_sample[i], sorted_sample[min(i + 1, len(sorted_sample) - 1)]
    if log:
        return lo * (hi / lo) ** (rank - i)
    return lo + (hi - lo) * (rank - i)


def sha(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def ts(dt: datetime) -> str:
    return dt.isoformat()


class Tables:
    """One psycopg connection and COPY per table, written in large chunks."""

    COLUMNS = {
        "analytics_blob": "id, digest, media_type, size, uncompressed_size, diff_id",
        "analytics_manifest": "id, digest, media_type, kind, size, config_id, os, architecture, variant, "
        "os_version, created, labels, layer_count, layers_size, artifact_type, subject, first_seen",
        "analytics_manifestlayer": "id, manifest_id, position, blob_id, media_type, annotations, urls",
        "analytics_historyentry": "id, config_id, position, created, created_by, comment, author, "
        "empty_layer, layer_position",
        "analytics_repositorymanifest": "id, repository_id, manifest_id, present, first_seen, last_seen",
        "analytics_tag": "id, repository_id, name, manifest_id, first_seen, last_seen, current_since, "
        "removed_at",
        "analytics_tagevent": "id, tag_id, old_digest, new_digest, seen_at, scan_id",
        "analytics_layerchain": "id, manifest_id, depth, chain, is_top, layer_count",
        "analytics_blobline": "blob_id, created_by",
    }

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conns, self.copies, self.buffers, self.ids = {}, {}, {}, {}
        self.rows = 0
        for table, columns in self.COLUMNS.items():
            conn = psycopg.connect(dsn)
            conn.execute("SET session_replication_role = replica")
            conn.execute("SET synchronous_commit = off")
            cm = conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN")
            self.conns[table] = (conn, cm)
            self.copies[table] = cm.__enter__()
            self.buffers[table] = []
            self.ids[table] = 0

    def next_id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def add(self, table: str, *values: object) -> None:
        """One row; SQL NULL is passed as `NULL` (not None: the per-value test was the hottest loop)."""
        buf = self.buffers[table]
        buf.append("\t".join(map(str, values)))
        if len(buf) >= 20000:
            self.flush(table)

    def flush(self, table: str) -> None:
        buf = self.buffers[table]
        if buf:
            self.copies[table].write("\n".join(buf) + "\n")
            self.rows += len(buf)
            buf.clear()

    def close(self) -> None:
        for table, (conn, cm) in self.conns.items():  # blobs first: dict order
            self.flush(table)
            cm.__exit__(None, None, None)
            conn.commit()
            conn.close()


class Generator:
    def __init__(self, *, images: int, seed: int, tables: Tables) -> None:
        self.n = images
        self.rng = random.Random(seed)
        self.seed = seed
        self.t = tables
        self.blob_digest: dict[int, str] = {}  # only layers that may be reused (bases, repo prefixes)
        self.unlined: set[int] = set()  # layers written, their first manifest (which fixes the line) not yet
        self.diff_pool: list[tuple[str, int]] = []

    # --- rows ---------------------------------------------------------------------------------------------

    def blob(self, label: str, size: int, media_type: str = LAYER_TYPE, diff_id: str | None = None) -> int:
        blob_id = self.t.next_id("analytics_blob")
        digest = sha(f"{self.seed}:blob:{label}")
        uncompressed = int(size * (1.5 + self.rng.random() * 2)) if media_type == LAYER_TYPE else size
        self.t.add(
            "analytics_blob", blob_id, digest, media_type, size, uncompressed, diff_id or sha(f"diff:{label}")
        )
        self.blob_digest[blob_id] = digest
        if media_type == LAYER_TYPE:
            self.unlined.add(blob_id)
        return blob_id

    def layer_size(self) -> int:
        return round(from_sample(self.rng, LAYER_SIZES, log=True))

    def layer_count(self) -> int:
        return round(from_sample(self.rng, LAYER_COUNTS, log=False))

    def manifest(
        self,
        label: str,
        layers: list[tuple[int, int, str]],
        *,
        created: datetime,
        kind: str = "image",
        lines: list[str] | None = None,
    ) -> tuple[int, str]:
        """layers: (blob id, size, created_by). Writes manifest, config, layers, history, chains."""
        rng = self.rng
        config_id = self.blob(f"config:{label}", 1500 + rng.randrange(6000), CONFIG_TYPE, diff_id="")
        manifest_id = self.t.next_id("analytics_manifest")
        digest = sha(f"{self.seed}:manifest:{label}")
        size = 400 + 160 * len(layers)
        stamp = ts(created)
        self.t.add(
            "analytics_manifest",
            manifest_id,
            digest,
            MANIFEST_TYPE,
            kind,
            size,
            config_id,
            "linux",
            "amd64",
            "",
            "",
            stamp,
            "{}",
            len(layers),
            sum(s for _, s, _ in layers),
            "application/vnd.in-toto+json" if kind == "artifact" else "",
            "",
            stamp,
        )
        chain = hashlib.sha256()  # sha256 of the space-joined digests so far, fed one digest at a time
        for position, (blob_id, _, created_by) in enumerate(layers):
            self.t.add(
                "analytics_manifestlayer", self.t.next_id("analytics_manifestlayer"), manifest_id, position,
                blob_id, LAYER_TYPE, "{}", "[]",
            )  # fmt: skip
            self.t.add(
                "analytics_historyentry", self.t.next_id("analytics_historyentry"), config_id, position,
                stamp, created_by, "", "", "f", position,
            )  # fmt: skip
            if blob_id in self.unlined:  # the lowest manifest id listing the layer: its line (BlobLine)
                self.unlined.discard(blob_id)
                self.t.add("analytics_blobline", blob_id, created_by)
            if kind == "image":
                chain.update(((" " if position else "") + self.blob_digest[blob_id]).encode())
                self.t.add(
                    "analytics_layerchain", self.t.next_id("analytics_layerchain"), manifest_id, position + 1,
                    chain.copy().hexdigest(), "t" if position + 1 == len(layers) else "f", len(layers),
                )  # fmt: skip
        self.t.add(
            "analytics_historyentry", self.t.next_id("analytics_historyentry"), config_id, len(layers),
            stamp, '/bin/sh -c #(nop)  CMD ["/app"]', "", "", "t", NULL,
        )  # fmt: skip
        return manifest_id, digest

    # --- the registry -------------------------------------------------------------------------------------

    def repositories(self) -> list[tuple[str, int]]:
        """(name, images) with Pareto-distributed sizes; namespaces skewed to a few big ones."""
        rng, out, left = self.rng, [], self.n
        namespaces = max(2, self.n // 40)
        i = 0
        while left > 0:
            size = min(left, max(1, int(rng.paretovariate(1.1) * 4)), 20000)
            ns = int(namespaces * rng.random() ** 3)
            out.append((f"ns{ns}/app{i}", size))
            left -= size
            i += 1
        return out

    def run(self, *, repo_ids: dict[str, int], library: dict[str, int]) -> None:
        rng = self.rng
        # base stacks: each a chain of layers, written once as images of library/<name>
        stacks: dict[str, list[tuple[int, int, str]]] = {}
        for name, sizes, parent, _ in BASES:
            own = [
                (self.blob(f"base:{name}:{i}", s), s, f"/bin/sh -c #(nop) ADD file:{name}{i} in /")
                for i, s in enumerate(sizes)
            ]
            stacks[name] = (stacks[parent] if parent else []) + own
            mid, digest = self.manifest(f"base:{name}", stacks[name], created=NOW - timedelta(days=400))
            self.hold(library[name], mid, present=True, seen=NOW - timedelta(days=400))
            self.tag(library[name], "latest", [digest], mid, NOW - timedelta(days=400), NOW)
        # image quotas: a repository goes to a stack (or to none) with probability proportional to the
        # quota left among those it fits in whole, so quotas fill up and are never exceeded
        left: dict[str | None, int] = {b[0]: int(b[3] * self.n) for b in BASES}
        left[None] = self.n - sum(left.values())

        for repo_name, count in self.repositories_list:
            repo_id = repo_ids[repo_name]
            prev_own: list[tuple[int, int, str]] = []
            fits = [name for name, room in left.items() if name and room >= count]
            base = rng.choices([None, *fits], [max(left[None], 1), *(left[name] for name in fits)])[0]
            left[base] -= count
            start = NOW - timedelta(days=rng.randrange(30, 700))
            for j in range(count):
                created = start + timedelta(days=j * rng.random() * 3)
                created = min(created, NOW - timedelta(hours=1))
                # total layers from the sample; a stack deeper than that still gets one layer of its own
                k = max(1, self.layer_count() - len(stacks[base] if base else ()))
                reuse = rng.randrange(0, min(k, len(prev_own)) + 1) if prev_own and rng.random() < 0.6 else 0
                own = prev_own[:reuse]
                for i in range(reuse, k):
                    size = self.layer_size()
                    line = rng.choice(INSTRUCTIONS).format(p=rng.choice(PACKAGES))
                    label = f"{repo_name}:{j}:{i}"
                    if self.diff_pool and rng.random() < 0.004:  # same content, another compression
                        diff_id, dsize = rng.choice(self.diff_pool)
                        own.append((self.blob(label, int(dsize * 0.9) + 1, diff_id=diff_id), dsize, line))
                    else:
                        blob_id = self.blob(label, size)
                        if rng.random() < 0.002:
                            self.diff_pool.append((sha(f"diff:{label}"), size))
                        own.append((blob_id, size, line))
                layers = (stacks[base] if base else []) + own
                mid, digest = self.manifest(f"{repo_name}:{j}", layers, created=created)
                prev_own = own
                last_seen = NOW - timedelta(days=rng.randrange(0, 400) * rng.random())
                superseded = j + 1 < count and rng.random() < 0.05
                self.hold(repo_id, mid, present=not superseded, seen=last_seen)
                if superseded:
                    self.pending_move = (repo_id, f"v{j}", digest, created, last_seen)
                else:
                    moved = getattr(self, "pending_move", None)
                    if moved and moved[0] == repo_id:
                        self.tag(repo_id, moved[1], [moved[2], digest], mid, moved[3], last_seen)
                    self.pending_move = None
                    self.tag(repo_id, f"v{j}", [digest], mid, created, last_seen)
                    if j == count - 1:
                        self.tag(repo_id, "latest", [digest], mid, created, last_seen)
                if rng.random() < 0.03:  # a BuildKit attestation: stored bytes, never an image
                    att = [(self.blob(f"att:{repo_name}:{j}", 20_000 + rng.randrange(20_000)), 20_000, "")]
                    aid, _ = self.manifest(f"att:{repo_name}:{j}", att, created=created, kind="artifact")
                    self.hold(repo_id, aid, present=True, seen=last_seen)

    def hold(self, repo_id: int, manifest_id: int, *, present: bool, seen: datetime) -> None:
        self.t.add(
            "analytics_repositorymanifest", self.t.next_id("analytics_repositorymanifest"), repo_id,
            manifest_id, "t" if present else "f", ts(seen - timedelta(days=30)), ts(seen),
        )  # fmt: skip

    def tag(self, repo_id: int, name: str, digests: list[str], mid: int, first: datetime, last: datetime):
        tag_id = self.t.next_id("analytics_tag")
        since = first + timedelta(days=len(digests) - 1)  # its last event's, to the digest it names now
        self.t.add("analytics_tag", tag_id, repo_id, name, mid, ts(first), ts(last), ts(since), NULL)
        old = ""
        for i, digest in enumerate(digests):
            self.t.add(
                "analytics_tagevent", self.t.next_id("analytics_tagevent"), tag_id, old, digest,
                ts(first + timedelta(days=i)), NULL,
            )  # fmt: skip
            old = digest


def _setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def generate(*, images: int, seed: int, database: str, log=print) -> dict[str, float]:
    """Create `database` afresh and fill it; return timings and sizes."""
    import psycopg

    admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    started = time.monotonic()
    _setup_django(database)
    from django.core.management import call_command
    from django.db import connection, transaction

    from analytics.ingest.rebuild import figures_rebuild
    from analytics.models import Registry, Repository, SummarySnapshot

    call_command("migrate", verbosity=0)
    registry = Registry.objects.create(name="hub", url="http://127.0.0.1:5999", allow_internal=True)
    dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
    tables = Tables(dsn)
    gen = Generator(images=images, seed=seed, tables=tables)
    gen.repositories_list = gen.repositories()
    names = [r for r, _ in gen.repositories_list] + [f"library/{b[0]}" for b in BASES]
    Repository.objects.bulk_create([Repository(registry=registry, name=n) for n in names], batch_size=5000)
    repo_ids = dict(Repository.objects.filter(registry=registry).values_list("name", "id"))
    gen.run(repo_ids=repo_ids, library={b[0]: repo_ids[f"library/{b[0]}"] for b in BASES})
    tables.close()
    copied = time.monotonic()
    log(f"copied {tables.rows:,} rows in {copied - started:.0f} s")
    with transaction.atomic(), connection.cursor() as cursor:
        for table in (t for t, columns in Tables.COLUMNS.items() if columns.startswith("id,")):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        # the COPY ran with triggers off (replica): each manifest's distinct blobs as the migration lists them
        cursor.execute(importlib.import_module("analytics.migrations.0035_manifest_blob").BACKFILL)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with transaction.atomic():
        figures_rebuild(registry_id=registry.id)
    rebuilt = time.monotonic()
    log(f"maintained figures rebuilt in {rebuilt - copied:.0f} s")
    from analytics.ingest.answers import answers_refresh

    answers_refresh(registry_id=registry.id)  # stale bases and missed savings, as a scan's end leaves them
    log(f"materialized answers computed in {time.monotonic() - rebuilt:.0f} s")
    # trend series: 30 daily registry points ending with today's figures, and two per repository
    from analytics.models import ScopeFigures

    snaps = []
    for row in ScopeFigures.objects.filter(registry=registry).values():
        days = range(30, -1, -1) if row["repository_id"] is None else (7, 0)
        for d in days:
            f = 1 - d / 100
            figures = {k: int(row[k] * f) for k in ("images", "manifests", "distinct_layers")}
            logical, stored = int(row["logical_bytes"] * f), int(row["stored_bytes"] * f)
            snaps.append(
                SummarySnapshot(
                    taken_at=NOW - timedelta(days=d),
                    registry_id=registry.id,
                    repository_id=row["repository_id"],
                    logical_bytes=logical,
                    stored_bytes=stored,
                    saved_bytes=logical - stored,
                    **figures,
                )
            )
    SummarySnapshot.objects.bulk_create(snaps, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE") if connection.connection.autocommit else cursor.execute("ANALYZE")
        cursor.execute("SELECT pg_database_size(current_database())")
        size = cursor.fetchone()[0]
    done = time.monotonic()
    log(f"done in {done - started:.0f} s; database {database} is {size / 1e9:.2f} GB")
    return {"seconds": done - started, "copy_seconds": copied - started, "bytes": size, "rows": tables.rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args(argv)
    generate(images=args.images, seed=args.seed, database=args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
