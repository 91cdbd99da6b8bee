"""Build a registry's worth of small test images with real tools and push them.

* ``docker build`` / ``docker push`` through a private dockerd (Docker schema 2 manifests):
  ``base/os:1`` (2 layers + ENV/LABEL empty-layer history), ``apps/web:1.0`` and ``apps/web:latest``
  (same digest, base + 1 layer), ``apps/api:1.0`` (base + a different layer), ``mirror/os:1``
  (the base image again, in a second repository).
* ``umoci`` + ``skopeo`` (OCI): ``oci/tool:1`` (2 layers, custom history) and ``multi/app:1`` — an OCI
  image index with linux/amd64 and linux/arm64 children that share their first layer.

Layer content is generated from a seeded PRNG (incompressible, so compressed sizes stay distinct and
meaningful, a few hundred KB each) with fixed mtimes.

Public API:
    build_test_registry(registry, dockerd) -> list[PushedImage]
    build_demo_registry(registry_host, creds=None) -> list[PushedImage]   (umoci + skopeo only)
    skopeo_inspect_raw(ref, creds=None) -> bytes
    skopeo_inspect_config(ref, creds=None) -> dict
    skopeo_copy(src, dst, *extra_flags)
    manifest_digest(raw) -> str
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .tools import require_tool, run

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

FIXED_MTIME = 1_700_000_000  # 2023-11-14, so generated trees are reproducible
FIXED_CREATED = "2024-01-01T00:00:00Z"


@dataclass(frozen=True)
class PushedImage:
    """One tag pushed to the registry, as the registry serves it."""

    repository: str  # "apps/web"
    tag: str  # "1.0"
    digest: str  # sha256 of the manifest bytes the registry serves
    media_type: str  # manifest / index media type served
    built_with: str  # "docker" | "umoci"
    registry_host: str  # "127.0.0.1:PORT"
    note: str = ""
    platforms: tuple[str, ...] = field(default=())  # for indexes: ("linux/amd64", ...)

    @property
    def ref(self) -> str:
        return f"{self.registry_host}/{self.repository}:{self.tag}"

    @property
    def digest_ref(self) -> str:
        return f"{self.registry_host}/{self.repository}@{self.digest}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["platforms"] = list(self.platforms)
        return d


class _RegistryLike(Protocol):
    @property
    def host(self) -> str: ...


class _DockerLike(Protocol):
    def docker(self, *args: str, timeout: float = ..., cwd: str | None = ...) -> str: ...


# --------------------------------------------------------------------------------------------
# content generation
# --------------------------------------------------------------------------------------------


def write_tree(root: Path, seed: str, files: dict[str, int]) -> None:
    """Write files (relative path -> size) of seeded random bytes under root, with fixed mtimes."""
    rng = random.Random(seed)
    for rel, size in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    for dirpath, _dirs, _files in os.walk(root):
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))


def manifest_digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# --------------------------------------------------------------------------------------------
# skopeo helpers (also used by tests to compute expectations independently of the app)
# --------------------------------------------------------------------------------------------


def _docker_ref(ref: str) -> str:
    return ref if ref.startswith("docker://") else f"docker://{ref}"


def _creds_args(flag: str, creds: tuple[str, str] | None) -> list[str]:
    return [flag, f"{creds[0]}:{creds[1]}"] if creds else []


def skopeo_inspect_raw(ref: str, creds: tuple[str, str] | None = None) -> bytes:
    """The manifest (or index) bytes the registry serves for `HOST/repo:tag` or `HOST/repo@digest`."""
    skopeo = require_tool("skopeo")
    argv = [skopeo, "inspect", "--raw", "--tls-verify=false", *_creds_args("--creds", creds)]
    return run([*argv, _docker_ref(ref)], timeout=120).stdout


def skopeo_inspect_config(ref: str, creds: tuple[str, str] | None = None) -> dict[str, Any]:
    """The image config JSON (for an index, skopeo picks the child matching this host)."""
    skopeo = require_tool("skopeo")
    argv = [skopeo, "inspect", "--config", "--raw", "--tls-verify=false"]
    argv += _creds_args("--creds", creds)
    out: dict[str, Any] = json.loads(run([*argv, _docker_ref(ref)], timeout=120).stdout)
    return out


def skopeo_inspect_json(ref: str, creds: tuple[str, str] | None = None) -> bytes:
    return skopeo_inspect_raw(ref, creds)


def skopeo_copy(src: str, dst: str, *extra: str) -> None:
    """Copy an image between plain-HTTP registries; `extra` adds skopeo copy flags (format, compression)."""
    skopeo = require_tool("skopeo")
    argv = [skopeo, "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", *extra]
    run([*argv, _docker_ref(src), _docker_ref(dst)], timeout=120)


def _record(
    host: str,
    repository: str,
    tag: str,
    built_with: str,
    note: str,
    creds: tuple[str, str] | None,
    expect_media_type: str,
) -> PushedImage:
    raw = skopeo_inspect_raw(f"{host}/{repository}:{tag}", creds)
    doc = json.loads(raw)
    media_type = doc.get("mediaType") or (
        OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    )  # OCI docs may omit mediaType
    if media_type != expect_media_type:
        raise RuntimeError(
            f"{host}/{repository}:{tag}: registry serves {media_type}, expected {expect_media_type}"
        )
    platforms: tuple[str, ...] = ()
    if "manifests" in doc:
        platforms = tuple(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in doc["manifests"])
    return PushedImage(
        repository=repository,
        tag=tag,
        digest=manifest_digest(raw),
        media_type=media_type,
        built_with=built_with,
        registry_host=host,
        note=note,
        platforms=platforms,
    )


# --------------------------------------------------------------------------------------------
# docker-built images
# --------------------------------------------------------------------------------------------


def _docker_build(dockerd: _DockerLike, ctx: Path, dockerfile: str, tag: str) -> None:
    (ctx / "Dockerfile").write_text(dockerfile)
    dockerd.docker("build", "--network", "none", "-q", "-t", tag, str(ctx), timeout=600)


def build_docker_images(
    registry_host: str,
    dockerd: _DockerLike,
    workdir: Path,
    creds: tuple[str, str] | None = None,
) -> list[PushedImage]:
    h = registry_host
    if creds:
        dockerd.docker("login", "-u", creds[0], "-p", creds[1], h)

    base = workdir / "ctx-base"
    write_tree(base / "rootfs-a", "base-a", {"etc/os-release.bin": 180_000, "lib/libc.bin": 130_000})
    write_tree(base / "rootfs-b", "base-b", {"usr/bin/busybox.bin": 210_000})
    _docker_build(
        dockerd,
        base,
        "FROM scratch\n"
        "COPY rootfs-a/ /\n"
        "ENV LAYERLENS_BASE=1 PATH=/usr/bin\n"
        'LABEL org.layerlens.test="base" org.layerlens.kind="os"\n'
        "COPY rootfs-b/ /\n"
        'CMD ["/usr/bin/busybox.bin"]\n',
        f"{h}/base/os:1",
    )
    dockerd.docker("push", "-q", f"{h}/base/os:1")

    web = workdir / "ctx-web"
    write_tree(web / "web", "web", {"index.bin": 90_000, "static/app.bin": 150_000})
    _docker_build(
        dockerd,
        web,
        f"FROM {h}/base/os:1\nCOPY web/ /srv/web/\nENV APP=web\nLABEL org.layerlens.app=web\n",
        f"{h}/apps/web:1.0",
    )
    dockerd.docker("tag", f"{h}/apps/web:1.0", f"{h}/apps/web:latest")
    dockerd.docker("push", "-q", f"{h}/apps/web:1.0")
    dockerd.docker("push", "-q", f"{h}/apps/web:latest")

    api = workdir / "ctx-api"
    write_tree(api / "api", "api", {"server.bin": 270_000})
    _docker_build(
        dockerd,
        api,
        f"FROM {h}/base/os:1\nCOPY api/ /srv/api/\nENV APP=api\n",
        f"{h}/apps/api:1.0",
    )
    dockerd.docker("push", "-q", f"{h}/apps/api:1.0")

    dockerd.docker("tag", f"{h}/base/os:1", f"{h}/mirror/os:1")
    dockerd.docker("push", "-q", f"{h}/mirror/os:1")

    def rec(repo: str, tag: str, note: str) -> PushedImage:
        return _record(h, repo, tag, "docker", note, creds, DOCKER_V2)

    return [
        rec("base/os", "1", "FROM scratch, 2 COPY layers, ENV/LABEL/CMD empty layers"),
        rec("apps/web", "1.0", "FROM base/os:1 + 1 layer"),
        rec("apps/web", "latest", "same digest as apps/web:1.0"),
        rec("apps/api", "1.0", "FROM base/os:1 + 1 different layer"),
        rec("mirror/os", "1", "base/os:1 pushed into a second repository"),
    ]


# --------------------------------------------------------------------------------------------
# umoci-built OCI images
# --------------------------------------------------------------------------------------------


class OciLayout:
    """Thin wrapper over `umoci` for one OCI image layout directory."""

    def __init__(self, path: Path) -> None:
        self.umoci = require_tool("umoci")
        self.path = path
        self._scratch = Path(tempfile.mkdtemp(prefix="ll-umoci-", dir=path.parent))
        run([self.umoci, "init", "--layout", path])

    def _u(self, *args: str | Path) -> None:
        run([self.umoci, *args], timeout=300)

    def new(self, tag: str, arch: str = "amd64") -> None:
        self._u("new", "--image", f"{self.path}:{tag}")
        self._u(
            "config",
            "--image", f"{self.path}:{tag}",
            "--no-history",
            "--created", FIXED_CREATED,
            "--os", "linux",
            "--architecture", arch,
        )  # fmt: skip

    def add_layer(
        self, tag: str, seed: str, files: dict[str, int], created_by: str, new_tag: str = ""
    ) -> None:
        """unpack `tag`, add generated files, repack as a new layer (onto new_tag or tag)."""
        bundle = Path(tempfile.mkdtemp(prefix="b-", dir=self._scratch))
        shutil.rmtree(bundle)
        self._u("unpack", "--image", f"{self.path}:{tag}", bundle)
        write_tree(bundle / "rootfs", seed, files)
        target = new_tag or tag
        if new_tag and new_tag != tag:
            self._u("tag", "--image", f"{self.path}:{tag}", new_tag)
        self._u(
            "repack",
            "--image", f"{self.path}:{target}",
            "--history.created", FIXED_CREATED,
            "--history.created_by", created_by,
            bundle,
        )  # fmt: skip
        shutil.rmtree(bundle, ignore_errors=True)

    def config(self, tag: str, *args: str, new_tag: str = "") -> None:
        extra = ["--tag", new_tag] if new_tag else []
        self._u("config", "--image", f"{self.path}:{tag}", *extra, *args)

    def index_json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return out

    def descriptor(self, tag: str) -> dict[str, Any]:
        for d in self.index_json()["manifests"]:
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return dict(d)
        raise KeyError(tag)

    def write_blob(self, data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (self.path / "blobs" / "sha256" / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    def add_index(self, tag: str, children: dict[str, tuple[str, str]]) -> str:
        """Write an OCI image index whose children are the given tags; children maps
        child tag -> (os, arch). Reference it from index.json as `tag`. Returns its digest."""
        manifests = []
        for child_tag, (os_name, arch) in children.items():
            d = self.descriptor(child_tag)
            manifests.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": d["digest"],
                    "size": d["size"],
                    "platform": {"architecture": arch, "os": os_name},
                }
            )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        data = json.dumps(index, indent=2, sort_keys=True).encode()
        digest = self.write_blob(data)
        top = self.index_json()
        top["manifests"] = [
            m
            for m in top["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
        ]
        top["manifests"].append(
            {
                "mediaType": OCI_INDEX,
                "digest": digest,
                "size": len(data),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
        (self.path / "index.json").write_text(json.dumps(top))
        return digest

    def push(self, tag: str, dest: str, creds: tuple[str, str] | None = None, all_: bool = False) -> None:
        skopeo = require_tool("skopeo")
        argv = [skopeo, "copy", "-q", "--dest-tls-verify=false", *_creds_args("--dest-creds", creds)]
        if all_:
            argv.append("--all")
        run([*argv, f"oci:{self.path}:{tag}", _docker_ref(dest)], timeout=300)

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def build_oci_images(
    registry_host: str, workdir: Path, creds: tuple[str, str] | None = None
) -> list[PushedImage]:
    h = registry_host
    # oci/tool:1 -- 2 layers + a config-only history entry
    tool = OciLayout(workdir / "oci-tool")
    tool.new("1")
    tool.add_layer("1", "tool-l1", {"opt/tool/bin.bin": 120_000}, "COPY tool binary /opt/tool")
    tool.add_layer("1", "tool-l2", {"opt/tool/data.bin": 85_000}, "COPY tool data /opt/tool")
    tool.config(
        "1",
        "--config.entrypoint", "/opt/tool/bin.bin",
        "--config.label", "org.layerlens.test=oci-tool",
        "--history.created", FIXED_CREATED,
        "--history.created_by", "umoci config --config.entrypoint /opt/tool/bin.bin",
    )  # fmt: skip
    tool.push("1", f"{h}/oci/tool:1", creds)
    tool.close()

    # multi/app:1 -- OCI index, amd64 + arm64, sharing the first layer
    multi = OciLayout(workdir / "oci-multi")
    multi.new("shared")
    multi.add_layer("shared", "multi-shared", {"app/shared.bin": 200_000}, "COPY shared app files")
    for arch, size in (("amd64", 100_000), ("arm64", 130_000)):
        multi.config("shared", "--architecture", arch, "--no-history", new_tag=f"{arch}-base")
        multi.add_layer(
            f"{arch}-base",
            f"multi-{arch}",
            {f"app/native-{arch}.bin": size},
            f"COPY native {arch} build",
            new_tag=arch,
        )
    multi.add_index("1", {"amd64": ("linux", "amd64"), "arm64": ("linux", "arm64")})
    multi.push("1", f"{h}/multi/app:1", creds, all_=True)
    multi.close()

    return [
        _record(h, "oci/tool", "1", "umoci", "OCI, 2 layers, custom history", creds, OCI_MANIFEST),
        _record(h, "multi/app", "1", "umoci", "OCI index amd64+arm64, shared layer", creds, OCI_INDEX),
    ]


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------


def _creds_of(registry: object) -> tuple[str, str] | None:
    user = getattr(registry, "username", None)
    password = getattr(registry, "password", None)
    return (user, password) if user and password else None


def build_test_registry(
    registry: _RegistryLike, dockerd: _DockerLike, workdir: str | Path | None = None
) -> list[PushedImage]:
    """Build and push every test image into `registry` (docker via `dockerd`, OCI via umoci)."""
    for tool in ("docker", "umoci", "skopeo"):
        require_tool(tool)
    creds = _creds_of(registry)
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ll-img-"))
    try:
        pushed = build_docker_images(registry.host, dockerd, tmp, creds)
        pushed += build_oci_images(registry.host, tmp, creds)
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return pushed


def build_demo_registry(registry_host: str, creds: tuple[str, str] | None = None) -> list[PushedImage]:
    """Demo content with umoci + skopeo only (no engine): a shared base, several repositories
    and tags (two tags on one digest), and one multi-platform index."""
    for tool in ("umoci", "skopeo"):
        require_tool(tool)
    h = registry_host
    tmp = Path(tempfile.mkdtemp(prefix="ll-demo-"))
    pushed: list[PushedImage] = []
    try:
        lay = OciLayout(tmp / "demo")
        lay.new("base")
        lay.add_layer("base", "demo-base-1", {"etc/base.bin": 300_000}, "ADD rootfs")
        lay.add_layer("base", "demo-base-2", {"usr/lib/libs.bin": 220_000}, "COPY libs")
        lay.config(
            "base",
            "--config.env", "PATH=/usr/bin",
            "--history.created", FIXED_CREATED,
            "--history.created_by", "ENV PATH=/usr/bin",
        )  # fmt: skip
        apps = {
            "web": {"srv/web.bin": 150_000},
            "api": {"srv/api.bin": 260_000},
            "worker": {"srv/worker.bin": 110_000, "srv/jobs.bin": 70_000},
        }
        for name, files in apps.items():
            lay.add_layer("base", f"demo-{name}", files, f"COPY {name} /srv", new_tag=name)
        # web 2.0: web + one more layer
        lay.add_layer("web", "demo-web-2", {"srv/web-v2.bin": 40_000}, "COPY patch", new_tag="web2")

        def push(tag: str, repo: str, rtag: str, note: str) -> None:
            lay.push(tag, f"{h}/{repo}:{rtag}", creds)
            pushed.append(_record(h, repo, rtag, "umoci", note, creds, OCI_MANIFEST))

        push("base", "demo/base", "1", "shared base, 2 layers")
        push("base", "demo/base", "stable", "same digest as demo/base:1")
        push("web", "demo/web", "1.0", "base + 1 layer")
        push("web", "demo/web", "latest-1", "same digest as demo/web:1.0")
        push("web2", "demo/web", "2.0", "web 1.0 + 1 layer")
        push("web2", "demo/web", "latest", "same digest as demo/web:2.0")
        push("api", "demo/api", "1.0", "base + 1 layer")
        push("worker", "demo/worker", "1", "base + 1 layer (2 files)")
        push("base", "mirror/base", "1", "demo/base:1 in a second repository")
        lay.close()
        pushed += build_oci_images(h, tmp, creds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pushed


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "demo":
        print("usage: python -m harness.images demo HOST:PORT", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    pushed = build_demo_registry(args[1])
    for p in pushed:
        print(f"{p.ref}\t{p.digest}\t{p.media_type}")
    print(f"pushed {len(pushed)} tags in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
