"""A Docker Engine as a source: plain records of every image it holds, read with the Docker SDK.

No Django here (like `workers/registry`): `analytics.engine_ingest` turns an `EngineSnapshot` into rows.

What the engine is asked (Docker Engine API, v1.41 for dockerd 20.10):

- `GET /info`: the engine's ID, version, storage driver.
- `GET /images/json?all=1`: every image, with `ParentId`, `RepoTags` and `RepoDigests`. The parent
  links tell intermediate images of the classic builder (untagged, with children) from top images,
  which is the set `docker system df` counts (moby 20.10 `daemon/images/image_list.go`).
- `GET /images/{id}/json`: `RootFS.Layers` (the diff IDs, bottom first) and the platform.
- `GET /images/{id}/history`: one row per config history entry, newest first; a row that made a layer
  carries that layer's size, the layer store's `DiffSize` of its ChainID (moby
  `daemon/images/image_history.go`): the sum of the tar entries' sizes when the layer was unpacked
  (`pkg/archive.UnpackLayer`), which is what every engine figure adds up.
- `GET /containers/json?all=1`: how many containers use each image (`docker system df` "active").

Per-layer sizes come from history alone; `/system/df` totals are never copied into the records, so
the reports compute them from layers and tests can compare the two.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import docker.tls
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util.connection

from workers.registry.policy import NetworkPolicy, parse_networks

# Classic builder and BuildKit write these instructions as history rows with no layer.
_METADATA_ROW = re.compile(
    r"(?:#\(nop\)\s+|^)(ENV|CMD|LABEL|EXPOSE|ENTRYPOINT|USER|VOLUME|ARG|ONBUILD|STOPSIGNAL|HEALTHCHECK"
    r"|SHELL|MAINTAINER)\b"
)
MISSING = "<missing>"


class EngineError(Exception):
    """The engine could not be reached or refused a request; `transient` asks for a retry."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class EngineRefused(EngineError):
    """The SSRF policy refuses the engine's address (never transient: the same address is refused again)."""


# Endpoints that name a host on the network; unix:// and npipe:// are local sockets, reached by path.
NETWORK_SCHEMES = ("tcp://", "ssh://", "http://", "https://")
_ALLOW_HINT = (
    "an operator can allow an internal engine with allow_internal (staff, API), --allow-internal "
    "(manage.py scan engine:...) or LAYERLENS_ALLOWED_NETWORKS"
)


def engine_host(endpoint: str) -> tuple[str, int | None] | None:
    """(host, port) of a network endpoint (`tcp://`, `ssh://`), None for a local socket."""
    if not endpoint.lower().startswith(NETWORK_SCHEMES):
        return None
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or ""), port


def _refused(policy: NetworkPolicy, host: str, address: str) -> None:
    why = policy.refusal(address)
    if why is not None:
        shown = host if host == address else f"{host} ({address})"
        raise EngineRefused(f"refusing to connect to the engine at {shown}: {why}; {_ALLOW_HINT}")


def _guarded_socket(conn: urllib3.connection.HTTPConnection, policy: NetworkPolicy) -> socket.socket:
    """Resolve once, check every address, connect to a checked one (as `workers.registry.policy`'s
    backend does for registries), so a name cannot be rebound to an internal address in between."""
    host, port = conn._dns_host, conn.port  # urllib3 2.x: the name it would resolve
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise urllib3.exceptions.NameResolutionError(host, conn, exc) from exc  # type: ignore[arg-type]
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    for address in addresses:
        _refused(policy, host, address)
    last: OSError | None = None
    for address in addresses:
        try:
            return urllib3.util.connection.create_connection(
                (address, port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except OSError as exc:
            last = exc
    raise urllib3.exceptions.NewConnectionError(conn, f"cannot connect to {host}: {last}")


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections go through `_guarded_socket` under `policy`."""

    def __init__(self, policy: NetworkPolicy) -> None:
        guard = policy

        class Plain(urllib3.connection.HTTPConnection):
            def _new_conn(self) -> socket.socket:
                return _guarded_socket(self, guard)

        class Secure(urllib3.connection.HTTPSConnection):
            def _new_conn(self) -> socket.socket:
                return _guarded_socket(self, guard)

        class PlainPool(urllib3.connectionpool.HTTPConnectionPool):
            ConnectionCls = Plain

        class SecurePool(urllib3.connectionpool.HTTPSConnectionPool):
            ConnectionCls = Secure

        self._pools: dict[str, type[urllib3.connectionpool.HTTPConnectionPool]] = {
            "http": PlainPool,
            "https": SecurePool,
        }
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


class _GuardedAPIClient(docker.APIClient):  # type: ignore[misc]  # the SDK has no types
    """The SDK's client with every http(s) request through `_GuardedAdapter` (the version check that
    the constructor sends included) and no proxy from the environment (a proxy would resolve names
    past the policy)."""

    def __init__(self, *, policy: NetworkPolicy, **kwargs: Any) -> None:
        self._guard = _GuardedAdapter(policy)
        super().__init__(**kwargs)

    def get_adapter(self, url: str) -> requests.adapters.BaseAdapter:
        if url.lower().startswith(("http://", "https://")):
            return self._guard
        adapter: requests.adapters.BaseAdapter = super().get_adapter(url)
        return adapter

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        merged: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
        merged["proxies"] = {}
        return merged


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainIDs of a layer stack, bottom first (image-spec config.md "Layer ChainID").

    ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
    """
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


@dataclass(frozen=True, slots=True)
class EngineLayerRecord:
    position: int  # 0 = bottom
    diff_id: str
    chain_id: str
    size: int | None  # the engine's DiffSize; None when history could not tell it


@dataclass(frozen=True, slots=True)
class EngineHistoryRecord:
    """One row of `docker image history`, stored oldest first (`position` 0 = oldest)."""

    position: int
    row_id: str  # an image ID for locally built parents, else "<missing>"
    created: datetime | None
    created_by: str
    comment: str
    size: int
    tags: tuple[str, ...] = ()
    layer_position: int | None = None  # the layer this row made; None for an empty layer or unknown
    empty_layer: bool | None = None  # None when the rows cannot be matched to layers with certainty


@dataclass(frozen=True, slots=True)
class EngineImageRecord:
    id: str  # the engine's image ID (sha256 of the config)
    parent_id: str
    created: datetime | None
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    os: str
    architecture: str
    variant: str
    containers: int
    layers: tuple[EngineLayerRecord, ...]
    history: tuple[EngineHistoryRecord, ...]


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    endpoint: str
    engine_id: str
    name: str
    server_version: str
    api_version: str
    os: str
    architecture: str
    storage_driver: str
    images: tuple[EngineImageRecord, ...]
    # image id -> why it was left out (it vanished mid-scan, or the engine refused)
    errors: dict[str, str] = field(default_factory=dict)


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str) and value and not value.startswith("0001-"):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _refs(values: Iterable[str] | None) -> tuple[str, ...]:
    # `all=1` lists untagged images with "<none>:<none>" / "<none>@<none>" placeholders.
    return tuple(sorted(v for v in values or () if not v.startswith("<none>")))


def match_history(sizes: list[int], created_by: list[str], layer_count: int) -> list[int | None] | None:
    """Which history rows (oldest first) made the image's layers: row index per layer, bottom first.

    The history API does not say which rows are empty layers, only each row's size. Rows with a
    size made a layer. When some layers are empty (size 0), the zero-size rows that made them are
    picked: all of them when the counts agree, else the ones that are not metadata instructions.
    Returns None when that does not settle it and the choice would change the size sequence
    (zero-size rows on both sides of a sized row); a list with None entries when the sizes are
    certain but not which zero-size row made the layer.
    """
    forced = [i for i, s in enumerate(sizes) if s > 0]
    zeros = [i for i, s in enumerate(sizes) if s == 0]
    need = layer_count - len(forced)
    if need < 0 or need > len(zeros):
        return None
    found: list[int | None] = []  # the declared element type: some results hold None
    if need == 0:
        found.extend(forced)
        return found
    if need == len(zeros):
        found.extend(range(len(sizes)))
        return found
    candidates = [i for i in zeros if not _METADATA_ROW.search(created_by[i])]
    if len(candidates) == need:
        found.extend(sorted(forced + candidates))
        return found
    # All zero-size rows between the same two sized rows: the size sequence is the same whichever
    # rows made the empty layers, so the layers are known and the rows that made them are not.
    gaps = {sum(1 for f in forced if f < z) for z in zeros}
    if len(gaps) == 1:
        gap = gaps.pop()
        rows: list[int | None] = [f for f in forced]
        rows[gap:gap] = [None] * need
        return rows
    return None


def _layer_size(matched: list[int | None] | None, sizes: list[int], pos: int) -> int | None:
    """Layer `pos`'s size from the matched history row: None if unmatched, 0 if made by a zero-size row."""
    if matched is None:
        return None
    row = matched[pos]
    return 0 if row is None else sizes[row]


class EngineClient:
    """A Docker Engine reached through the Docker SDK (`docker.DockerClient`).

    `endpoint` is `unix:///path`, `tcp://host:port` or `ssh://...`; TLS material (PEM text) is written
    to nothing: the SDK needs file paths, so the caller passes paths it manages (`tls_files`).

    A network endpoint follows the registries' SSRF rule (`workers.registry.policy`): an internal
    address needs `allow_internal` or a place in `allowed_networks`, else `EngineRefused`. A `tcp://`
    engine's connections resolve once and connect to the address checked; an `ssh://` host is checked
    as it resolves before connecting (ssh resolves it again itself). `unix://` and `npipe://` sockets
    are local by design: whoever can name one already runs on this machine.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 60,
        tls_files: Mapping[str, str] | None = None,
        verify: bool = True,
        allow_internal: bool = False,
        allowed_networks: Iterable[str] | str | None = None,
    ) -> None:
        self.endpoint = endpoint
        policy = NetworkPolicy(
            allow_internal=allow_internal, allowed_networks=parse_networks(allowed_networks)
        )
        host = engine_host(endpoint)
        if host is not None:
            why = policy.host_refusal(host[0], host[1], timeout=timeout)
            if why is not None:
                raise EngineRefused(f"refusing to connect to the engine at {why}; {_ALLOW_HINT}")
        tls: docker.tls.TLSConfig | bool = False
        if tls_files:
            cert = (tls_files["cert"], tls_files["key"]) if tls_files.get("cert") else None
            tls = docker.tls.TLSConfig(
                client_cert=cert,
                ca_cert=tls_files.get("ca") or None,
                verify=verify and bool(tls_files.get("ca")),
            )
        try:
            if endpoint.lower().startswith(("tcp://", "http://", "https://")):
                api = _GuardedAPIClient(
                    policy=policy, base_url=endpoint, timeout=int(timeout), tls=tls, version="auto"
                )
                self._client = docker.DockerClient.__new__(docker.DockerClient)
                self._client.api = api  # DockerClient is its APIClient and nothing else (docker 7)
            else:
                self._client = docker.DockerClient(
                    base_url=endpoint, timeout=int(timeout), tls=tls, version="auto"
                )
        except docker.errors.DockerException as exc:
            refused = exc.__cause__ or exc.__context__
            if isinstance(refused, EngineRefused):  # the SDK wraps what its version check met
                raise refused from None
            raise EngineError(f"cannot reach the engine at {endpoint}: {exc}", transient=True) from None
        self.api = self._client.api

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pull(self, reference: str, *, username: str | None = None, password: str | None = None) -> str:
        """`docker pull reference` (`POST /images/create`) with the registry's credentials; the image ID."""
        auth = {"username": username, "password": password} if username else None
        repo, _, tag = reference.rpartition(":") if "@" not in reference else (reference, "", "")
        if "/" in tag or not repo:  # the colon was a port, there is no tag
            repo, tag = reference, ""
        try:
            image = self._client.images.pull(repo, tag=tag or None, auth_config=auth)
        except docker.errors.APIError as exc:
            raise EngineError(f"pull of {reference} failed: {exc.explanation or exc}") from None
        except docker.errors.DockerException as exc:
            raise EngineError(f"pull of {reference} failed: {exc}", transient=True) from None
        return str(image.id)

    def snapshot(self) -> EngineSnapshot:
        """Everything the engine holds, as records. Images deleted mid-scan go to `errors`."""
        try:
            info = self.api.info()
            version = self.api.version()
            listed = self.api.images(all=True)
            containers = self.api.containers(all=True)
        except docker.errors.DockerException as exc:
            raise EngineError(
                f"the engine at {self.endpoint} did not answer: {exc}", transient=True
            ) from None
        in_use: dict[str, int] = {}
        for c in containers:
            in_use[c.get("ImageID", "")] = in_use.get(c.get("ImageID", ""), 0) + 1
        images: list[EngineImageRecord] = []
        errors: dict[str, str] = {}
        for summary in listed:
            try:
                images.append(self._image(summary, in_use.get(summary["Id"], 0)))
            except docker.errors.NotFound as exc:
                errors[summary["Id"]] = f"vanished during the scan: {exc.explanation or exc}"
            except docker.errors.DockerException as exc:
                errors[summary["Id"]] = str(exc)
        images = _fill_sizes(images)
        return EngineSnapshot(
            endpoint=self.endpoint,
            engine_id=str(info.get("ID", "")),
            name=str(info.get("Name", "")),
            server_version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            os=str(info.get("OSType", "")),
            architecture=str(info.get("Architecture", "")),
            storage_driver=str(info.get("Driver", "")),
            images=tuple(sorted(images, key=lambda i: i.id)),
            errors=errors,
        )

    def _image(self, summary: Mapping[str, Any], containers: int) -> EngineImageRecord:
        image_id = summary["Id"]
        inspect = self.api.inspect_image(image_id)
        rows = list(reversed(self.api.history(image_id)))  # the API lists newest first
        diff_ids = list((inspect.get("RootFS") or {}).get("Layers") or [])
        chains = chain_ids(diff_ids)
        sizes = [int(r.get("Size") or 0) for r in rows]
        matched = match_history(sizes, [r.get("CreatedBy") or "" for r in rows], len(diff_ids))
        layer_of_row: dict[int, int] = {}
        if matched is not None:
            layer_of_row = {row: pos for pos, row in enumerate(matched) if row is not None}
        layers = tuple(
            EngineLayerRecord(
                position=pos,
                diff_id=diff_id,
                chain_id=chains[pos],
                size=_layer_size(matched, sizes, pos),
            )
            for pos, diff_id in enumerate(diff_ids)
        )
        certain = matched is not None and None not in matched
        history = tuple(
            EngineHistoryRecord(
                position=i,
                row_id=str(r.get("Id") or MISSING),
                created=_ts(r.get("Created")),
                created_by=r.get("CreatedBy") or "",
                comment=r.get("Comment") or "",
                size=sizes[i],
                tags=tuple(r.get("Tags") or ()),
                layer_position=layer_of_row.get(i),
                empty_layer=(i not in layer_of_row) if certain else None,
            )
            for i, r in enumerate(rows)
        )
        return EngineImageRecord(
            id=image_id,
            parent_id=summary.get("ParentId") or "",
            created=_ts(inspect.get("Created")) or _ts(summary.get("Created")),
            repo_tags=_refs(summary.get("RepoTags")),
            repo_digests=_refs(summary.get("RepoDigests")),
            os=inspect.get("Os") or "",
            architecture=inspect.get("Architecture") or "",
            variant=inspect.get("Variant") or "",
            containers=containers,
            layers=layers,
            history=history,
        )


def _fill_sizes(images: list[EngineImageRecord]) -> list[EngineImageRecord]:
    """A layer's size belongs to its ChainID: an image whose history was ambiguous takes the size
    another image's history settled for the same ChainID."""
    known = {layer.chain_id: layer.size for img in images for layer in img.layers if layer.size is not None}
    out = []
    for img in images:
        if all(layer.size is not None for layer in img.layers):
            out.append(img)
            continue
        layers = tuple(
            EngineLayerRecord(x.position, x.diff_id, x.chain_id, known.get(x.chain_id)) for x in img.layers
        )
        out.append(
            EngineImageRecord(
                img.id,
                img.parent_id,
                img.created,
                img.repo_tags,
                img.repo_digests,
                img.os,
                img.architecture,
                img.variant,
                img.containers,
                layers,
                img.history,
            )  # fmt: skip
        )
    return out


def iter_layers(snapshot: EngineSnapshot) -> Iterator[EngineLayerRecord]:
    """Every distinct layer (by ChainID) in the snapshot."""
    seen: set[str] = set()
    for img in snapshot.images:
        for layer in img.layers:
            if layer.chain_id not in seen:
                seen.add(layer.chain_id)
                yield layer
