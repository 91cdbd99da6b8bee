"""Benchmark: registry-wide full scan and unchanged rescan against the registry's own ceiling and skopeo.

In one run, on loopback:

1. Builds a real CNCF registry of `--repos` repositories x `--tags` tags of small generated images
   pushed over the registry API (harness/pusher.py): every image has a base of 3 layers
   shared by a tenth of the repositories, one layer and one config of its own.
2. The registry's ceiling: `wrk` (C, kept-alive connections) GETs the same manifests (by tag) and
   configs a full scan reads, cycling through all of them; requests/s divided by the requests an
   image needs (manifest + config + its share of a tag list).
3. Layerlens: a full scan of the registry, then a rescan of the unchanged registry, through a real
   Celery worker (`--concurrency` processes) writing to PostgreSQL; images/s from the scan's start
   to its last child's finish. Peak worker memory is the largest VmHWM of the worker's processes;
   CPU per image is read from /proc for the registry, the worker's processes and PostgreSQL (the
   benchmark database's backends and the server's own processes): on a CPU-bound machine it says
   where the time goes.
4. The peer baseline: `skopeo inspect --raw` and `--config` per tag, 4 tags at a time (`xargs -P4`),
   over a sample of `--skopeo-sample` tags; it fetches but stores nothing.

With `--workdir DIR` the registry's storage is kept there and pushed only once: later runs measure
the same images without building them again (a fresh database each run all the same).

    make bench                      # or: .venv/bin/python -m bench.scan_registry --repos 200 --tags 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("DEBUG", "1")
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens_bench"
)
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The benchmark registry listens on loopback, which the SSRF policy refuses unless allowed.
os.environ.setdefault("LAYERLENS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")

ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["Accept"] = "ACCEPT"})
end
""".replace("ACCEPT", ACCEPT)


@dataclass(frozen=True)
class PushedRef:
    """What the ceiling and the skopeo baseline need of a pushed image (kept with `--workdir`)."""

    repository: str
    tag: str
    config_digest: str


def build(url: str, repos: int, tags: int) -> list:
    from harness.pusher import Pusher, make_base

    bases = [make_base(f"base{i}", layers=3, size=16384 + 4096 * i) for i in range(max(1, repos // 10))]
    with Pusher(url) as push:

        def one(r: int) -> list:
            name = f"team{r % 20}/app{r}"
            return [
                push.image(name, f"v{t}", seed=f"{name}:{t}", base=bases[r % len(bases)]) for t in range(tags)
            ]

        pushed = [one(r) for r in range(len(bases))]  # each base's first home, before the mounts
        with ThreadPoolExecutor(8) as pool:
            pushed += list(pool.map(one, range(len(bases), repos)))
    return [image for repo in pushed for image in repo]


def ceiling(host: str, images: list, seconds: int, connections: int) -> float:
    """Requests/s the registry serves for the manifest and config GETs a full scan sends."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = Path(tmp, "paths")
        paths.write_text(
            "".join(
                f"/v2/{i.repository}/manifests/{i.tag}\n/v2/{i.repository}/blobs/{i.config_digest}\n"
                for i in images
            )
        )
        script = Path(tmp, "paths.lua")
        script.write_text(WRK_SCRIPT)
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"http://{host}"],
            env={**os.environ, "WRK_PATHS": str(paths)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def skopeo_rate(host: str, images: list, sample: int) -> float:
    refs = [f"{host}/{i.repository}:{i.tag}" for i in images[:: max(1, len(images) // sample)]][:sample]
    cmd = (
        "skopeo inspect --tls-verify=false --raw docker://{} >/dev/null && "
        "skopeo inspect --tls-verify=false --config docker://{} >/dev/null"
    )
    t = time.monotonic()
    subprocess.run(["xargs", "-P4", "-I{}", "sh", "-c", cmd], input="\n".join(refs), text=True, check=True)
    return len(refs) / (time.monotonic() - t)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--tags", type=int, default=10, help="tags per repository")
    parser.add_argument("--concurrency", type=int, default=3, help="worker processes (3 beat 2 on 2 cores)")
    parser.add_argument("--skopeo-sample", type=int, default=200, help="tags the skopeo baseline reads")
    parser.add_argument("--wrk-seconds", type=int, default=8)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the registry storage here, built only when empty (later runs skip the pushes)",
    )
    args = parser.parse_args()

    dbname = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", dbname], capture_output=True)
    import django

    django.setup()
    from django.core.management import call_command

    from analytics.models import Registry, Scan
    from analytics.scans.start import scan_start
    from analytics.selectors.scope import Scope
    from analytics.selectors.summary import dedup_summary
    from config.celery import app
    from harness.celery_worker import CeleryWorker
    from harness.proc import cpu_seconds, cpu_spent, peak_rss_mb, postgres_pids, process_tree
    from harness.registry import RegistryServer, blobstore_bytes

    call_command("migrate", "--noinput", verbosity=0)
    call_command("flush", "--noinput", verbosity=0)
    app.control.purge()
    load = os.getloadavg()
    built = args.workdir / f"built-{args.repos}x{args.tags}.json" if args.workdir else None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with RegistryServer(workdir=args.workdir) as registry:
        t0 = time.monotonic()
        if built is not None and built.exists():
            images = [PushedRef(*row) for row in json.loads(built.read_text())]
        else:
            images = build(registry.url, args.repos, args.tags)
            if built is not None:
                built.write_text(json.dumps([[i.repository, i.tag, i.config_digest] for i in images]))
        build_s = time.monotonic() - t0
        requests_per_image = 2 + args.repos / len(images)  # manifest, config, a share of the tag list
        rps = ceiling(registry.host, images, args.wrk_seconds, connections=16)
        skopeo = skopeo_rate(registry.host, images, args.skopeo_sample)

        # production settings in the worker: DEBUG off (no per-query debug bookkeeping), JSON logs
        production = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "LOG_FORMAT": "json"}
        worker = CeleryWorker(
            database_name=dbname,
            broker_url=os.environ["CELERY_BROKER_URL"],
            concurrency=args.concurrency,
            env=production,
        )
        worker.start()
        try:
            cpu: dict[str, dict[str, float]] = {}

            def components() -> dict[str, dict[int, float]]:
                assert worker.proc is not None and registry.proc is not None
                return {
                    "registry": cpu_seconds([registry.proc.pid]),
                    "workers": cpu_seconds(process_tree(worker.proc.pid)),
                    "postgres": cpu_seconds(postgres_pids(dbname)),
                    # of which the database's own backends (the rest: the server's shared processes)
                    "postgres_backends": cpu_seconds(postgres_pids(dbname, server=False)),
                }

            def scan() -> tuple[float, Scan]:
                before = components()
                # A process that ends during the scan (a database connection closed after
                # CONN_MAX_AGE, its backend with it) would take its CPU along: read every half second.
                seen: dict[str, dict[int, float]] = {k: {} for k in before}
                s = scan_start(target=registry.url)
                deadline = time.monotonic() + 1800
                polls = 0
                while time.monotonic() < deadline:
                    s.refresh_from_db()
                    if s.is_finished:
                        break
                    polls += 1
                    if polls % 5 == 0:
                        for k, v in components().items():
                            seen[k].update(v)
                    time.sleep(0.1)
                else:
                    raise RuntimeError("scan did not finish:\n" + worker.log_text()[-3000:])
                after = {k: {**seen[k], **v} for k, v in components().items()}
                cpu["rescan" if cpu else "full_scan"] = {k: cpu_spent(before[k], after[k]) for k in after}
                return (s.finished_at - s.created_at).total_seconds(), s

            full_s, full = scan()
            reg = Registry.objects.get(url=registry.url)
            full_stored = dedup_summary(scope=Scope(registry_id=reg.id)).stored_bytes
            rescan_s, rescan = scan()
            assert worker.proc is not None
            peak_mb = peak_rss_mb(process_tree(worker.proc.pid))
        finally:
            worker.stop()
        summary = dedup_summary(scope=Scope(registry_id=reg.id))
        disk = blobstore_bytes(registry.root)

    n = summary.images
    ceiling_ips = rps / requests_per_image

    def cpu_ratio(run: str) -> float:
        parts = cpu[run]
        return round((parts["workers"] + parts["postgres"]) / parts["registry"], 2)

    full_ips, rescan_ips = n / full_s, n / rescan_s
    result = {
        "repositories": args.repos,
        "tags": len(images),
        "images": n,
        "build_seconds": round(build_s, 1),
        "registry_ceiling_requests_per_second": round(rps),
        "requests_per_image": requests_per_image,
        "registry_ceiling_images_per_second": round(ceiling_ips, 1),
        "skopeo_images_per_second": round(skopeo, 1),
        "full_scan_seconds": round(full_s, 2),
        "full_scan_images_per_second": round(full_ips, 1),
        "rescan_seconds": round(rescan_s, 2),
        "rescan_images_per_second": round(rescan_ips, 1),
        "worker_processes": args.concurrency,
        "worker_peak_rss_mb": round(peak_mb, 1),
        # CPU per image in ms, by process: where a CPU-bound scan on a shared machine spends it
        "cpu_ms_per_image": {
            run: {k: round(1000 * v / n, 2) for k, v in parts.items()} for run, parts in cpu.items()
        },
        "status": [full.status, rescan.status],
        "stored_bytes_after_full_scan": full_stored,
        "stored_bytes_after_rescan": summary.stored_bytes,
        "blobstore_bytes": disk,
        "ratios": {
            # the CPU the scanner (workers and PostgreSQL) spends per image over what the registry spends
            # serving it, from /proc: the target is <= 1.0 for both scans
            "full_scan_cpu_vs_registry": cpu_ratio("full_scan"),
            "rescan_cpu_vs_registry": cpu_ratio("rescan"),
            "full_scan_vs_ceiling": round(full_ips / ceiling_ips, 2),
            "full_scan_vs_skopeo": round(full_ips / skopeo, 2),
            "rescan_vs_full_scan": round(rescan_ips / full_ips, 2),
        },
        "targets_met": {
            "full_scan_at_least_half_the_ceiling": full_ips >= 0.5 * ceiling_ips,
            "full_scan_at_least_3x_skopeo": full_ips >= 3 * skopeo,
            "rescan_at_least_5x_full_scan": rescan_ips >= 5 * full_ips,
            "worker_memory_under_300_mb": peak_mb < 300,
            "figures_equal_blob_store": full_stored == summary.stored_bytes == disk,
            "full_scan_cpu_at_most_the_registrys": cpu_ratio("full_scan") <= 1.0,
            "rescan_cpu_at_most_the_registrys": cpu_ratio("rescan") <= 1.0,
        },
        "load_average_at_start": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
