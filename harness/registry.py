"""A real CNCF distribution registry (`docker-registry serve CONFIG`) on a free 127.0.0.1 port.

Usage::

    with RegistryServer() as reg:
        reg.url   # http://127.0.0.1:PORT
        reg.host  # 127.0.0.1:PORT
        reg.root  # filesystem storage root
        blobstore_bytes(reg.root)

Basic auth: ``RegistryServer(username="u", password="p")`` writes an htpasswd file. The bcrypt
hash comes from ``htpasswd -nbB`` when apache2-utils is installed, otherwise from Python's
``crypt`` module with METHOD_BLOWFISH (Debian 12's libxcrypt implements bcrypt ``$2b$``).

Notifications: ``RegistryServer(notify=Notify(url, headers={"Authorization": "Bearer ..."}))`` sends every
push, pull, mount and delete to `url` (distribution's `notifications.endpoints`), retrying until a 2xx.
More configuration: ``RegistryServer(extra_config="notifications:\n  endpoints: ...")`` appends YAML
(top-level keys the generated config does not have, such as a ``notifications:`` block).

Token auth: ``RegistryServer(token_auth=TokenServer(...).start())`` configures ``auth.token`` (realm,
service, issuer, rootcertbundle) so the registry verifies that server's JWTs (tests/support/token_server.py
is one such server; anything with those four attributes will do).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from .tools import free_loopback_port, require_tool, stop_process

BLOBS_SUBPATH = Path("docker/registry/v2/blobs")


class TokenAuth(Protocol):
    """What the registry's `auth.token` section needs from a token server; a protocol, because the
    token server is a test's own and the harness imports no tests."""

    @property
    def realm(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def issuer(self) -> str: ...
    @property
    def cert_path(self) -> Path: ...


@dataclass(frozen=True)
class Notify:
    """One notification endpoint: where distribution POSTs its event envelopes, with which headers.
    A failed delivery is retried every `backoff` once `threshold` failures in a row were met."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: str = "5s"
    threshold: int = 3
    backoff: str = "1s"

    def yaml_lines(self) -> list[str]:
        lines = [
            "notifications:",
            "  endpoints:",
            "    - name: layerlens",
            f"      url: {self.url}",
            f"      timeout: {self.timeout}",
            f"      threshold: {self.threshold}",
            f"      backoff: {self.backoff}",
        ]
        if self.headers:
            lines.append("      headers:")
            lines += [f"        {name}: [{json.dumps(value)}]" for name, value in self.headers.items()]
        return lines


def blobstore_digests(root: str | os.PathLike[str]) -> dict[str, int]:
    """Map digest ("sha256:...") -> size in bytes for every blob `data` file the registry keeps."""
    blobs = Path(root) / BLOBS_SUBPATH
    out: dict[str, int] = {}
    if not blobs.is_dir():
        return out
    # Layout: blobs/<algo>/<2 hex>/<hex>/data
    for algo_dir in blobs.iterdir():
        if not algo_dir.is_dir():
            continue
        for data in algo_dir.glob("*/*/data"):
            out[f"{algo_dir.name}:{data.parent.name}"] = data.stat().st_size
    return out


def blobstore_bytes(root: str | os.PathLike[str]) -> int:
    """Sum of the sizes of every `data` file under <root>/docker/registry/v2/blobs/."""
    blobs = Path(root) / BLOBS_SUBPATH
    if not blobs.is_dir():
        return 0
    return sum(p.stat().st_size for p in blobs.rglob("data") if p.is_file())


def bcrypt_htpasswd_line(username: str, password: str) -> str:
    """An htpasswd line `user:$2y$...` (bcrypt, the only scheme distribution accepts)."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        proc = subprocess.run(
            [htpasswd, "-nbB", username, password], capture_output=True, check=True, text=True
        )
        return proc.stdout.strip().splitlines()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # removed in Python 3.13; fine on 3.11

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("no bcrypt available for registry basic auth: install apache2-utils (htpasswd)")
    return f"{username}:{hashed}"


def _config_yaml(
    root: Path,
    port: int,
    htpasswd_path: Path | None,
    token_auth: TokenAuth | None = None,
    notify: Notify | None = None,
    extra_config: str = "",
) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if htpasswd_path is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: layerlens-test",
            f"    path: {htpasswd_path}",
        ]
    if token_auth is not None:
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token_auth.realm}",
            f"    service: {token_auth.service}",
            f"    issuer: {token_auth.issuer}",
            f"    rootcertbundle: {token_auth.cert_path}",
        ]
    if notify is not None:
        lines += notify.yaml_lines()
    if extra_config:
        lines.append(extra_config.rstrip("\n"))
    return "\n".join(lines) + "\n"


class RegistryServer:
    """A `docker-registry serve` child process with its own storage root.

    `workdir` (default: a new temp dir, deleted by cleanup()) holds config.yml, registry.log and
    storage/ (the filesystem root). `port` defaults to a free port on 127.0.0.1.
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        startup_timeout: float = 30,
        token_auth: TokenAuth | None = None,
        notify: Notify | None = None,
        extra_config: str = "",
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if token_auth is not None and username is not None:
            raise ValueError("htpasswd and token auth are exclusive")
        self.token_auth = token_auth
        self.notify = notify
        self.extra_config = extra_config
        self.username = username
        self.password = password
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ll-reg-"))
        self.root = self.workdir / "storage"
        self._fixed_port = port
        self.port = port or 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "registry.log"
        self._startup_timeout = startup_timeout

    # -- public attributes -------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_header(self) -> dict[str, str]:
        if self.username is None or self.password is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> RegistryServer:
        binary = require_tool("docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        htpasswd_path = None
        if self.username is not None and self.password is not None:
            htpasswd_path = self.workdir / "htpasswd"
            htpasswd_path.write_text(bcrypt_htpasswd_line(self.username, self.password) + "\n")
        last_err = ""
        attempts = 1 if self._fixed_port else 3
        for _attempt in range(attempts):  # a free port can be raced; retry with another
            self.port = self._fixed_port or free_loopback_port()
            config = self.workdir / "config.yml"
            config.write_text(
                _config_yaml(
                    self.root, self.port, htpasswd_path, self.token_auth, self.notify, self.extra_config
                )
            )
            log = open(self.log_path, "ab")  # noqa: SIM115 - child owns it
            self.proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
            log.close()
            if self._wait_ready():
                atexit.register(self.stop)  # never outlive this process, even without cleanup()
                return self
            last_err = self.log_path.read_text(errors="replace")[-2000:]
            stop_process(self.proc)
            self.proc = None
        raise RuntimeError(f"docker-registry did not come up on {self.host}:\n{last_err}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            req = urllib.request.Request(self.url + "/v2/", headers=self.auth_header)
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and (self.username is not None or self.token_auth is not None):
                    return True  # answering; credentials checked by callers
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def cleanup(self) -> None:
        """Stop and delete the temp dir (only if we created it)."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- convenience -------------------------------------------------------------------------
    def blobstore_bytes(self) -> int:
        return blobstore_bytes(self.root)

    def blobstore_digests(self) -> dict[str, int]:
        return blobstore_digests(self.root)
