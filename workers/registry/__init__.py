"""A registry HTTP API v2 / OCI distribution client with no Django import (DESIGN section 1).

Modules: `reference` (names, tags, digests, scan targets), `client` (the HTTP operations), `snapshot`
(the repository crawl built on them), `auth` (challenges, credentials, the token flow), `transport`
(redirects, retries, rate limits), `policy` (the SSRF policy and the connection backend that enforces
it), `manifests` (pure parsing to records), `errors` (the exception tree, error bodies), `records`
(the output contract), `deep` (a layer measured as it streams, for deep scans).
"""

from .client import FetchedManifest, RegistryClient
from .errors import (
    DigestMismatchError,
    ForbiddenError,
    HTTPStatusError,
    ManifestError,
    NotFoundError,
    PolicyError,
    ProtocolError,
    ReferenceError,
    RegistryError,
    SlowReplyError,
    TransportError,
    UnauthorizedError,
)
from .reference import Reference, ScanTarget, parse_reference, parse_scan_target
from .snapshot import snapshot_repository

__all__ = [
    "DigestMismatchError",
    "FetchedManifest",
    "ForbiddenError",
    "HTTPStatusError",
    "ManifestError",
    "NotFoundError",
    "PolicyError",
    "ProtocolError",
    "Reference",
    "ReferenceError",
    "RegistryClient",
    "RegistryError",
    "ScanTarget",
    "SlowReplyError",
    "TransportError",
    "UnauthorizedError",
    "parse_reference",
    "parse_scan_target",
    "snapshot_repository",
]
