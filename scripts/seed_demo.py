#!/usr/bin/env python3
"""Fill a loopback registry with demo images (umoci + skopeo only; no Docker Engine needed).

    scripts/seed_demo.py 127.0.0.1:5000 [--creds USER:PASS] [--json]

Pushes a shared base (demo/base:1 and :stable on one digest), demo/web 1.0/latest-1/2.0/latest,
demo/api:1.0, demo/worker:1, mirror/base:1 (the base in a second repository), oci/tool:1 and
multi/app:1 (an OCI index with linux/amd64 and linux/arm64 children sharing a layer).
Content is deterministic, so seeding twice pushes the same digests.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.images import build_demo_registry  # noqa: E402
from harness.tools import ToolMissing  # noqa: E402


def _loopback(host_port: str) -> bool:
    host = host_port.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("registry", help="HOST:PORT of a loopback registry, e.g. 127.0.0.1:5000")
    ap.add_argument("--creds", help="USER:PASS for a registry with basic auth")
    ap.add_argument("--json", action="store_true", help="print the pushed images as JSON")
    args = ap.parse_args()
    if not _loopback(args.registry):
        ap.error(f"{args.registry} is not a loopback address")
    creds: tuple[str, str] | None = None
    if args.creds:
        user, _, password = args.creds.partition(":")
        creds = (user, password)
    t0 = time.monotonic()
    try:
        pushed = build_demo_registry(args.registry, creds)
    except ToolMissing as exc:
        print(f"seed_demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([p.as_dict() | {"ref": p.ref} for p in pushed], indent=2))
    else:
        for p in pushed:
            print(f"{p.ref}\t{p.digest}\t{p.media_type}")
    print(f"seed_demo: pushed {len(pushed)} tags in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
