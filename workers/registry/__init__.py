"""A registry HTTP API v2 / OCI distribution client with no Django import (DESIGN section 1).

Modules: `reference` (names, tags, digests, scan targets), `client` (`RegistryClient`: its
configuration, pool and threads), its operations `listing` (catalog and tags) and `content`
(manifests, blobs, configs), both on `exchange` (one request and its reply), `snapshot` (the
repository crawl built on them), `auth` (challenges, credentials, the token flow), `transport`
(redirects, retries, rate limits), `policy` (the SSRF policy and the connection backend that enforces
it), pure parsing in `media_types` (which type a manifest is), `documents` (strict JSON, text safe to
store), `manifests` (manifests and indexes), `schema1` (Docker schema 1), `image_config` (image
configs) and `builders` (parsed parts to records), `errors` (the exception tree, error bodies),
`records` (the output contract), `deep` (a layer measured as it streams, for deep scans).
"""

from .client import RegistryClient
from .content import FetchedManifest
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
