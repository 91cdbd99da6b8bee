"""Pull events stored as the receiver stores them, and the apply tasks that sends, for the tests of how
the inbox asks for its task: pulls are applied without reading the registry."""

from __future__ import annotations

import json
import uuid

from analytics.events.formats import events_parse
from analytics.events.inbox import events_store
from analytics.models import Registry, RegistryEvent
from config.celery import app

DISTRIBUTION = "application/vnd.docker.distribution.events.v1+json"


def pull_deliver(registry: Registry, capture, *, digest: str) -> None:
    """One pull event, as a request stores it; the apply task asked for once it commits (`capture` is
    pytest-django's `django_capture_on_commit_callbacks`)."""
    event = {
        "id": str(uuid.uuid4()),
        "action": "pull",
        "target": {
            "repository": "team/app",
            "digest": digest,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
        },
        "request": {"method": "GET", "useragent": "containerd/v1.7.24"},
    }
    body = json.dumps({"events": [event]}).encode()
    with capture(execute=True):
        events_store(registry=registry, events=events_parse(body=body, content_type=DISTRIBUTION).events)


def pending(registry: Registry) -> int:
    return RegistryEvent.objects.filter(registry=registry, applied_at__isnull=True).count()


def sends_capture(monkeypatch) -> list[tuple[str, list]]:
    """The tasks sent from now on, captured (name, args) rather than brokered."""
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kw: sent.append((name, args)))
    return sent
