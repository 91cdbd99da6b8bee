"""What `manage.py registry events-config` prints is what the senders accept: the whole output appended
to a real docker-registry's config.yml (comments and all) starts it, and it then posts its notifications
to the printed URL with the printed header, manifests only; Quay's webhook URL makes Python's requests
(Quay's HTTP client) send the secret as Basic credentials. A loopback receiver in the test records what
arrives: this tests the configuration, not the receiver Layerlens serves."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests
import yaml
from django.core.management import call_command

from analytics.registries import registry_upsert
from harness.pusher import OCI_MANIFEST, Pusher, make_base
from harness.registry import RegistryServer

pytestmark = [pytest.mark.django_db, pytest.mark.integration]
SECRET = "config-Events-Secret-0123456789"
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


class Receiver:
    """An HTTP server on a free loopback port that answers 200 to every POST and keeps what came."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [event for r in self.requests for event in json.loads(r["body"])["events"]]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _config(registry_id: int, *args: str) -> str:
    out = io.StringIO()
    call_command("registry", "events-config", str(registry_id), *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _seen(events: list[dict]) -> set[tuple[str, str, str, str]]:
    return {
        (e["action"], e["target"]["repository"], e["target"].get("digest", ""), e["target"].get("tag", ""))
        for e in events
    }


def test_distribution_accepts_the_printed_config_and_sends_its_events_as_printed(receiver):
    registry = registry_upsert(url="http://127.0.0.1:5992", events_secret=SECRET)
    public = receiver.url + "/layerlens"  # behind a proxy, under a path prefix
    text = _config(registry.id, "--url", public)
    doc = yaml.safe_load(text)
    receiver_path = f"/layerlens/api/v1/registries/{registry.id}/events/"
    assert doc == {
        "notifications": {
            "endpoints": [
                {
                    "name": f"layerlens-{registry.id}",
                    "url": receiver.url + receiver_path,
                    "headers": {"Authorization": [f"Bearer {SECRET}"]},
                    "timeout": "5s",
                    "threshold": 5,
                    "backoff": "10s",
                    "ignoredmediatypes": ["application/octet-stream"],
                }
            ]
        }
    }
    assert yaml.safe_load(_config(registry.id, "--url", public, "--for", "distribution")) == doc

    with RegistryServer(extra_config=text) as reg, Pusher(reg.url) as push:
        base = make_base("events-config", layers=2)
        app = push.image("team/app", "1.0", seed="ec-app", base=base)
        web = push.image("team/web", "1.0", seed="ec-web", base=base)  # the base's layers mounted
        pulled = httpx.get(f"{reg.url}/v2/team/app/manifests/1.0", headers={"Accept": OCI_MANIFEST})
        assert pulled.headers["Docker-Content-Digest"] == app.digest
        assert httpx.delete(f"{reg.url}/v2/team/web/manifests/{web.digest}").status_code == 202
        # (action, repository, digest, tag); deleting a manifest also untags every tag naming it, each
        # announced as a delete of the tag alone
        expected = {
            ("push", "team/app", app.digest, "1.0"),
            ("push", "team/web", web.digest, "1.0"),
            ("pull", "team/app", app.digest, "1.0"),
            ("delete", "team/web", web.digest, ""),
            ("delete", "team/web", "", "1.0"),
        }
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not expected <= _seen(receiver.events()):
            time.sleep(0.1)
        time.sleep(1)  # anything the registry would send besides

    for request in receiver.requests:
        assert request["path"] == receiver_path
        assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
        assert request["headers"]["Content-Type"].startswith(EVENTS_MEDIA_TYPE)
    events = receiver.events()
    # no blob events: the layers and configs uploaded, mounted or read are not announced
    blob_digests = {*app.blobs, *web.blobs}
    assert not [e for e in events if e["target"].get("digest") in blob_digests]
    assert not [e for e in events if e["target"].get("mediaType") == "application/octet-stream"]
    assert _seen(events) == expected and len(events) == len(expected)


def test_harbor_and_quay_settings_carry_the_secret_the_way_each_sends_it(receiver):
    registry = registry_upsert(url="http://127.0.0.1:5992", events_secret=SECRET)
    url = f"{receiver.url}/api/v1/registries/{registry.id}/events/"
    harbor = json.loads(_config(registry.id, "--url", receiver.url, "--for", "harbor"))
    assert harbor["event_types"] == ["PUSH_ARTIFACT", "DELETE_ARTIFACT", "PULL_ARTIFACT"]
    assert harbor["targets"] == [
        {
            "type": "http",
            "address": url,
            "auth_header": f"Bearer {SECRET}",
            "skip_cert_verify": False,
            "payload_format": "Default",
        }
    ]
    quay = json.loads(_config(registry.id, "--url", receiver.url, "--for", "quay"))
    assert (quay["event"], quay["method"], quay["eventConfig"]) == ("repo_push", "webhook", {})
    # Quay's WebhookMethod.perform: requests.post(url, data=..., headers={"Content-type": ...})
    requests.post(quay["config"]["url"], data="{}", headers={"Content-type": "application/json"}, timeout=5)
    (sent,) = receiver.requests
    assert sent["path"] == f"/api/v1/registries/{registry.id}/events/"
    assert (
        sent["headers"]["Authorization"]
        == "Basic " + base64.b64encode(f"layerlens:{SECRET}".encode()).decode()
    )

    # the whole output: one YAML document, the other senders' settings in its comments
    text = _config(registry.id, "--url", receiver.url)
    assert set(yaml.safe_load(text)) == {"notifications"}
    assert f"#   Auth header:       Bearer {SECRET}" in text and f"#   {json.dumps(harbor)}" in text
    assert f"#   Webhook URL:               {quay['config']['url']}" in text
