"""Session-scoped pytest fixtures for the real infrastructure.

Registered from the root conftest with ``pytest_plugins = ["tests.support.fixtures"]``.

* ``local_services``  -- PostgreSQL and Redis answer on loopback (started if needed).
* ``registry_server`` -- a real ``docker-registry`` on 127.0.0.1 (RegistryServer).
* ``dockerd_server``  -- a private ``dockerd`` (vfs, no networking) (DockerDaemon).
* ``test_registry``   -- registry_server with every test image built and pushed (BuiltRegistry).
* ``_empty_cache``    -- (every test) the cache of throttle and login-failure counts, emptied.

Nothing is skipped: a missing tool fails the test with a hint to run scripts/bootstrap.sh.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.dockerd import DockerDaemon
from harness.images import PushedImage, build_test_registry
from harness.registry import RegistryServer
from harness.services import ServiceError, ensure_services
from harness.tools import BOOTSTRAP_HINT, ToolMissing


@dataclass
class BuiltRegistry:
    registry: RegistryServer
    images: list[PushedImage]
    build_seconds: float

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def url(self) -> str:
        return self.registry.url

    def image(self, repository: str, tag: str) -> PushedImage:
        for img in self.images:
            if img.repository == repository and img.tag == tag:
                return img
        raise KeyError(f"{repository}:{tag}")

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Throttle and login-failure counts start from nothing in every test (and django-axes, which keeps
    the cache it met first, meets the test's own)."""
    from axes.handlers.proxy import AxesProxyHandler
    from django.core.cache import cache

    cache.clear()
    AxesProxyHandler.implementation = None


def _fail_setup(exc: BaseException) -> None:
    pytest.fail(f"test infrastructure unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def local_services() -> list[str]:
    try:
        return ensure_services()
    except (ServiceError, ToolMissing, OSError) as exc:
        _fail_setup(exc)
        raise


@pytest.fixture(scope="session")
def registry_server() -> Iterator[RegistryServer]:
    try:
        reg = RegistryServer().start()
    except (ToolMissing, RuntimeError, OSError) as exc:
        _fail_setup(exc)
        raise
    try:
        yield reg
    finally:
        reg.cleanup()


@pytest.fixture(scope="session")
def dockerd_server() -> Iterator[DockerDaemon]:
    if os.geteuid() != 0:
        pytest.fail("dockerd_server needs root to run a private dockerd; " + BOOTSTRAP_HINT, pytrace=False)
    try:
        daemon = DockerDaemon().start()
    except (ToolMissing, RuntimeError, OSError) as exc:
        _fail_setup(exc)
        raise
    try:
        yield daemon
    finally:
        daemon.cleanup()


@pytest.fixture(scope="session")
def test_registry(registry_server: RegistryServer, dockerd_server: DockerDaemon) -> BuiltRegistry:
    t0 = time.monotonic()
    try:
        images = build_test_registry(registry_server, dockerd_server)
    except ToolMissing as exc:
        _fail_setup(exc)
        raise
    return BuiltRegistry(registry_server, images, time.monotonic() - t0)
