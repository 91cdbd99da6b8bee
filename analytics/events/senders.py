"""What a registry is told so that it sends its events here: distribution's `notifications:` block, a
Harbor webhook policy and a Quay repository notification, each pointing at this server's receiver for
that registry (`POST /api/v1/registries/{id}/events/`) with the registry's events secret.

How each sends the secret:

* distribution (2.x `configuration.Endpoint`; also GitLab's registry): the endpoint's static `headers`,
  so `Authorization: Bearer <secret>` on every request. Blob events are dropped at the source
  (`ignoredmediatypes: application/octet-stream`, the media type distribution gives every blob target):
  Layerlens follows images by their manifests, and a pull sends one event per layer otherwise.
* Harbor (2.x webhook policy, per project): the target's `auth_header` is sent as the `Authorization`
  header as it is, so `Bearer <secret>`.
* Quay (repository notification, "Webhook POST"): Quay posts with no header of the user's choosing; the
  only credential it can carry is the URL's user info, which its HTTP client (requests) sends as
  `Authorization: Basic base64(layerlens:<secret>)`.

Text only: these are what an operator pastes, built from a registry row and a public URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from analytics.errors import InvalidRequest
from analytics.models import Registry

RECEIVER_PATH = "/api/v1/registries/{id}/events/"
QUAY_USER = "layerlens"
HARBOR_EVENT_TYPES = ("PUSH_ARTIFACT", "DELETE_ARTIFACT", "PULL_ARTIFACT")
# distribution retries an event until it is answered 2xx, holding it in memory meanwhile: a timeout
# well above what storing one takes, and a pause after a run of failures so an outage is not hammered.
DISTRIBUTION_TIMEOUT = "5s"
DISTRIBUTION_THRESHOLD = 5
DISTRIBUTION_BACKOFF = "10s"
BLOB_MEDIA_TYPE = "application/octet-stream"
SENDERS = ("distribution", "harbor", "quay")


def public_url_normalise(url: str, *, source: str = "LAYERLENS_PUBLIC_URL") -> str:
    """This server's address as registries reach it: http(s), a host, an optional path prefix; no user
    info, query or fragment (an `InvalidRequest` naming `source` otherwise). No trailing slash."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError as exc:
        raise InvalidRequest(f"{source}: {url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(
            f"{source}: {url!r} is not an http(s) URL with a host, e.g. https://layerlens.example"
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise InvalidRequest(
            f"{source}: give the server's base URL alone, without user info, query or fragment"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def receiver_url(*, public_url: str, registry_id: int) -> str:
    return public_url + RECEIVER_PATH.format(id=registry_id)


@dataclass(frozen=True)
class EventsConfig:
    """What to paste into each kind of registry for one Layerlens registry."""

    registry_id: int
    registry_name: str
    url: str  # the receiver
    secret: str

    @property
    def endpoint_name(self) -> str:
        return f"layerlens-{self.registry_id}"

    def distribution(self) -> str:
        """The `notifications:` block for distribution's config.yml (strings JSON-quoted: valid YAML)."""
        q = json.dumps
        return "\n".join(
            [
                "notifications:",
                "  endpoints:",
                f"    - name: {q(self.endpoint_name)}",
                f"      url: {q(self.url)}",
                "      headers:",
                f"        Authorization: [{q('Bearer ' + self.secret)}]",
                f"      timeout: {DISTRIBUTION_TIMEOUT}",
                f"      threshold: {DISTRIBUTION_THRESHOLD}",
                f"      backoff: {DISTRIBUTION_BACKOFF}",
                "      ignoredmediatypes:",
                f"        - {BLOB_MEDIA_TYPE}",
            ]
        )

    def harbor_policy(self) -> dict[str, object]:
        """The body of Harbor's `POST /api/v2.0/projects/{project}/webhook/policies`."""
        return {
            "name": "layerlens",
            "description": f"Layerlens follows this project's artifacts (registry {self.registry_name})",
            "enabled": True,
            "event_types": list(HARBOR_EVENT_TYPES),
            "targets": [
                {
                    "type": "http",
                    "address": self.url,
                    "auth_header": f"Bearer {self.secret}",
                    "skip_cert_verify": False,
                    "payload_format": "Default",
                }
            ],
        }

    def quay_webhook_url(self) -> str:
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{QUAY_USER}:{quote(self.secret, safe='')}@{rest}"

    def quay_notification(self) -> dict[str, object]:
        """The body of Quay's `POST /api/v1/repository/{namespace}/{repository}/notification/`."""
        return {
            "event": "repo_push",
            "method": "webhook",
            "config": {"url": self.quay_webhook_url()},
            "eventConfig": {},
            "title": "Layerlens",
        }

    def text(self, sender: str = "all") -> str:
        """What `manage.py registry events-config` prints: one sender's settings alone (`distribution`:
        the YAML block; `harbor`, `quay`: their API's JSON body), or all three as one YAML document whose
        only key is `notifications`, Harbor's and Quay's settings in comments."""
        if sender == "distribution":
            return self.distribution()
        if sender == "harbor":
            return json.dumps(self.harbor_policy())
        if sender == "quay":
            return json.dumps(self.quay_notification())
        harbor = json.dumps(self.harbor_policy())
        quay = json.dumps(self.quay_notification())
        return "\n".join(
            [
                f"# Layerlens events for registry {self.registry_id} ({self.registry_name}).",
                "# The secret below is the registry's events secret: keep this text out of tickets and logs.",
                "#",
                "# CNCF distribution (docker-registry, registry:2, GitLab's registry): merge into the",
                "# registry's config.yml (add the endpoint to notifications.endpoints if it has some)",
                "# and restart the registry.",
                self.distribution(),
                "#",
                "# Harbor 2.x: a webhook in each project to follow",
                "# (Projects > PROJECT > Webhooks > New webhook):",
                "#   Notify type:       http",
                "#   Payload format:    Default",
                "#   Event types:       Artifact pushed, Artifact deleted, Artifact pulled",
                f"#                      ({', '.join(HARBOR_EVENT_TYPES)})",
                f"#   Endpoint URL:      {self.url}",
                f"#   Auth header:       Bearer {self.secret}",
                "#   Verify remote certificate: on",
                "# or through Harbor's API, with this body:",
                f"#   {harbor}",
                f"#   manage.py registry events-config {self.registry_id} --for harbor | curl -u ADMIN \\",
                "#     -H 'Content-Type: application/json' --data-binary @- \\",
                "#     https://HARBOR/api/v2.0/projects/PROJECT/webhook/policies",
                "#",
                "# Quay: a notification in each repository to follow (Repository > Settings > Events and",
                "# Notifications > Create Notification):",
                "#   When this event occurs:    Push to Repository (Quay announces no deletes and no pulls:",
                "#                              those reach Layerlens by the scheduled scan)",
                "#   Then issue a notification: Webhook POST",
                f"#   Webhook URL:               {self.quay_webhook_url()}",
                "# Quay sends no header of your choosing: the URL's user info becomes",
                f"# `Authorization: Basic` (user {QUAY_USER}, password the secret).",
                "# or through Quay's API, with this body:",
                f"#   {quay}",
                f"#   manage.py registry events-config {self.registry_id} --for quay | curl \\",
                "#     -H 'Authorization: Bearer QUAY_TOKEN' -H 'Content-Type: application/json' \\",
                "#     --data-binary @- \\",
                "#     https://QUAY/api/v1/repository/NAMESPACE/REPOSITORY/notification/",
            ]
        )


def events_config(
    *, registry: Registry, public_url: str, source: str = "LAYERLENS_PUBLIC_URL"
) -> EventsConfig:
    """What to paste into `registry` so that it sends its events to the server at `public_url`; an
    `InvalidRequest` when the registry has no events secret (or it cannot be read) or the URL is unusable."""
    base = public_url_normalise(public_url, source=source)
    try:
        secret = registry.get_events_secret()
    except ValueError as exc:
        raise InvalidRequest(f"registry {registry.id} ({registry.name}): its events secret: {exc}") from None
    if not secret:
        raise InvalidRequest(
            f"registry {registry.id} ({registry.name}) has no events secret: set one with "
            f"`manage.py registry events-secret {registry.id} --generate` (or --stdin), "
            "or events_secret in the API or the admin"
        )
    return EventsConfig(
        registry_id=registry.id,
        registry_name=registry.name,
        url=receiver_url(public_url=base, registry_id=registry.id),
        secret=secret,
    )


def public_url_notes(public_url: str) -> list[str]:
    """What an operator should know about the address before pasting it (printed apart from the config)."""
    parts = urlsplit(public_url)
    notes = []
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        notes.append(
            f"{parts.hostname} is this machine: a registry elsewhere cannot reach it (and Quay refuses it); "
            "set LAYERLENS_PUBLIC_URL or pass --url with the address registries reach this server at"
        )
    if parts.scheme == "http":
        notes.append(
            "http:// carries the secret in clear text: use https:// unless the path is one you trust"
        )
    return notes
