"""Benchmark: full scan and unchanged rescan of a real registry on loopback, PostgreSQL writes included.

Builds the demo content with umoci + skopeo, copies it into `--copies` extra namespaces with
`skopeo copy` (so blobs are shared across many repositories, as in a real registry), then times
`scan_run_inline` for a full scan and for a rescan of the unchanged registry, in a database of its own.

    make bench                      # or: .venv/bin/python -m bench.scan_demo --copies 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("DEBUG", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens_bench"
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The benchmark registry listens on loopback, which the SSRF policy refuses unless allowed.
os.environ.setdefault("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")


def copy(host: str, src: str, dst: str) -> None:
    subprocess.run(
        ["skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{host}/{src}", f"docker://{host}/{dst}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=20, help="extra namespaces holding copies of the demo")
    args = parser.parse_args()

    dbname = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", dbname], capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    from analytics.models import Registry
    from analytics.scans.start import scan_create, scan_request_resolve, scan_run_inline
    from analytics.selectors.scope import Scope
    from analytics.selectors.summary import dedup_summary
    from harness.images import build_demo_registry
    from harness.registry import RegistryServer, blobstore_bytes

    call_command("migrate", "--noinput", verbosity=0)
    call_command("flush", "--noinput", verbosity=0)
    with RegistryServer() as registry:
        t0 = time.monotonic()
        pushed = build_demo_registry(registry.host)
        jobs = [
            (p.ref.split("/", 1)[1], f"copy{i}/{p.ref.split('/', 1)[1]}")
            for i in range(args.copies)
            for p in pushed
        ]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda j: copy(registry.host, *j), jobs))
        build_s = time.monotonic() - t0

        def scan() -> tuple[float, object]:
            request = scan_request_resolve(target=registry.url)
            s = scan_create(registry=request.registry)
            t = time.monotonic()
            result = scan_run_inline(scan_id=s.id)
            return time.monotonic() - t, result

        full_s, full = scan()
        rescan_s, rescan = scan()
        reg = Registry.objects.get(url=registry.url)
        summary = dedup_summary(scope=Scope(registry_id=reg.id))
        result = {
            "tags": full.tags_count,
            "repositories": full.repositories_total,
            "images": summary.images,
            "build_seconds": round(build_s, 1),
            "full_scan_seconds": round(full_s, 2),
            "full_scan_images_per_second": round(summary.images / full_s, 1),
            "rescan_seconds": round(rescan_s, 2),
            "rescan_images_per_second": round(summary.images / rescan_s, 1),
            "status": [full.status, rescan.status],
            "logical_bytes": summary.logical_bytes,
            "stored_bytes": summary.stored_bytes,
            "saved_bytes": summary.saved_bytes,
            "dedup_ratio": summary.dedup_ratio,
            "blobstore_bytes": blobstore_bytes(registry.root),
        }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
