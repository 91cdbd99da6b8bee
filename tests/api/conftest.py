"""The API tests' world: one registry, two repositories, two images sharing one base layer.

    team/app:1.0, team/app:latest -> image A: manifest 500, config 1000, layers base 10000 + app 2000
    team/web:latest               -> image B: manifest 600, config 1100, layers base 10000 + web 3000

so, registry-wide: logical 13500 + 14700 = 28200, stored 1100 + 2100 + 15000 = 18200, saved 10000.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest
import redis
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from analytics.models import Registry, Repository
from analytics.registries import registry_upsert
from harness import records as f

PASSWORD = "s3cret-Pa55word-never-shown"


@dataclass
class World:
    registry: Registry
    app: Repository
    web: Repository
    base: object
    image_a: object
    image_b: object


@pytest.fixture
def world(db) -> World:
    registry = registry_upsert(url="http://127.0.0.1:5999", username="robot", password=PASSWORD)
    base = f.layer("base", 10_000, uncompressed_size=30_000)
    image_a = f.image(
        "a",
        layers=[base, f.layer("app", 2_000, uncompressed_size=6_000)],
        config_size=1_000,
        manifest_size=500,
        empty_steps={1: "ENV A=1"},
    )
    image_b = f.image(
        "b",
        layers=[base, f.layer("web", 3_000, uncompressed_size=9_000)],
        config_size=1_100,
        manifest_size=600,
        empty_steps={1: "ENV B=1"},
    )
    app = f.ingest(registry, "team/app", {"1.0": image_a, "latest": image_a})
    web = f.ingest(registry, "team/web", {"latest": image_b})
    return World(registry=registry, app=app, web=web, base=base, image_a=image_a, image_b=image_b)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("reader", password="reader-pw")


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("boss", password="boss-pw", is_staff=True)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def client_staff(staff) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def sent_tasks(monkeypatch) -> list[tuple[str, list]]:
    """Celery sends, captured instead of reaching the broker; everything else is real."""
    from config.celery import app

    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, args)))
    return sent


@pytest.fixture
def shared_cache(settings):
    """The production cache: the shared Redis (a db of its own here, LAYERLENS_TEST_CACHE_URL), under a
    prefix of this test's; yields a client of that Redis and the prefix."""
    url = os.environ.get("LAYERLENS_TEST_CACHE_URL", "redis://127.0.0.1:6379/10")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {
            "BACKEND": "analytics.infra.cache.FailOpenRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    client = redis.Redis.from_url(url)
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
