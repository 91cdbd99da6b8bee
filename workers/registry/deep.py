"""Deep scan: a layer blob streamed from the registry through a decompressor, never to disk.

A registry only knows compressed sizes. Without an engine, the uncompressed figures come from reading
the layer: `GET /v2/<name>/blobs/<digest>` (distribution-spec "Pulling blobs") is read chunk by chunk,
decompressed on the fly (gzip: RFC 1952, the stdlib; zstd: RFC 8878, the `zstandard` package), and the
tar stream is walked without extracting anything. Measured per layer:

- `uncompressed_size`: the sum of the tar entries' sizes, which is what a Docker Engine's layer store
  records as the layer's size (moby `pkg/archive.UnpackLayer` adds `hdr.Size` for every entry), so it
  equals `docker image history` for the same layer;
- `tar_bytes`: the length of the uncompressed stream (headers and padding included);
- `diff_id`: `sha256` of the uncompressed stream (image-spec config.md `rootfs.diff_ids`), checked
  against the config's when one is given;
- the compressed bytes are hashed too and must match the blob digest (`DigestMismatchError`).

A scan holds a `ByteBudget`: compressed bytes read across all layers never exceed it; a layer whose
size does not fit in what is left is not started (`BudgetExceeded`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from .client import RegistryClient
from .errors import DigestMismatchError, ProtocolError, RegistryError
from .reference import validate_digest, validate_repository

GZIP_TYPES = frozenset(
    {
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
ZSTD_TYPES = frozenset({"application/vnd.oci.image.layer.v1.tar+zstd"})
TAR_TYPES = frozenset(
    {"application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"}
)
_CHUNK = 64 * 1024


class BudgetExceeded(RegistryError):
    """The scan's byte budget does not cover this layer; nothing more is read."""


@dataclass
class ByteBudget:
    """Compressed bytes a deep scan may still read, shared by all the layers of one scan."""

    remaining: int

    def take(self, n: int) -> None:
        if n > self.remaining:
            raise BudgetExceeded(f"the deep scan's byte budget is spent ({self.remaining} bytes left)")
        self.remaining -= n


@dataclass(frozen=True, slots=True)
class LayerMeasure:
    """What streaming one layer told: sizes and the diff_id computed from the bytes themselves."""

    digest: str
    media_type: str
    compressed_size: int
    uncompressed_size: int  # sum of the tar entries' sizes: the engine's DiffSize
    tar_bytes: int  # the uncompressed stream's length
    diff_id: str
    diff_id_verified: bool | None  # None when no expected diff_id was given


class _Source(io.RawIOBase):
    """A readable over HTTP body chunks that hashes and counts them and charges the budget."""

    def __init__(self, chunks: Iterator[bytes], budget: ByteBudget, algorithm: str) -> None:
        self._chunks = chunks
        self._pending = b""
        self._budget = budget
        self.hash = hashlib.new(algorithm)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._budget.take(len(chunk))
            self.hash.update(chunk)
            self.count += len(chunk)
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _Hashing(io.RawIOBase):
    """A readable over the decompressed stream that computes the diff_id as tarfile reads."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.count += n
        return n


def measure_stream(
    chunks: Iterator[bytes],
    *,
    digest: str,
    media_type: str,
    budget: ByteBudget,
    expected_diff_id: str | None = None,
) -> LayerMeasure:
    """Measure one layer from its compressed bytes (an iterator of chunks), holding one chunk at a time."""
    source = _Source(chunks, budget, digest.split(":", 1)[0])
    raw = io.BufferedReader(source, _CHUNK)
    inner: Any  # GzipFile, a zstd stream reader or the raw stream: all readables
    if media_type in GZIP_TYPES:
        inner = gzip.GzipFile(fileobj=raw, mode="rb")
    elif media_type in ZSTD_TYPES:
        inner = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_CHUNK)
    elif media_type in TAR_TYPES:
        inner = raw
    else:
        raise ProtocolError(f"no decompressor for layer media type {media_type!r}", reference=digest)
    plain = _Hashing(inner)
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BufferedReader(plain, _CHUNK), mode="r|") as tar:
            for member in tar:
                unpacked += member.size
            # what follows the end-of-archive blocks still counts in the diff_id
            while tar.fileobj is not None and tar.fileobj.read(_CHUNK):
                pass
    except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
        if isinstance(exc, BudgetExceeded):
            raise
        raise ProtocolError(f"layer is not a readable {media_type} tar: {exc}", reference=digest) from None
    while source.readinto(bytearray(_CHUNK)):  # compressed trailer bytes, so the blob digest is whole
        pass
    actual = f"{digest.split(':', 1)[0]}:{source.hash.hexdigest()}"
    if actual != digest:
        raise DigestMismatchError(
            f"blob digest mismatch: the {source.count} bytes served hash to {actual}",
            expected=digest,
            actual=actual,
            reference=digest,
        )
    diff_id = "sha256:" + plain.hash.hexdigest()
    return LayerMeasure(
        digest=digest,
        media_type=media_type,
        compressed_size=source.count,
        uncompressed_size=unpacked,
        tar_bytes=plain.count,
        diff_id=diff_id,
        diff_id_verified=None if not expected_diff_id else expected_diff_id == diff_id,
    )


def measure_layer(
    client: RegistryClient,
    repository: str,
    digest: str,
    *,
    media_type: str,
    size: int,
    budget: ByteBudget,
    expected_diff_id: str | None = None,
) -> LayerMeasure:
    """Stream `digest` from `repository` and measure it (see `measure_stream`).

    Reads through `RegistryClient.open_blob`, so auth, redirects and the network policy are the same as
    for every other request; the body is consumed as it arrives, never buffered whole nor written to disk.
    """
    validate_repository(repository)
    validate_digest(digest)
    if size > budget.remaining:
        raise BudgetExceeded(f"layer {digest} of {size} bytes exceeds the {budget.remaining} bytes left")
    with client.open_blob(repository, digest, chunk_size=_CHUNK) as chunks:
        return measure_stream(
            chunks, digest=digest, media_type=media_type, budget=budget, expected_diff_id=expected_diff_id
        )
