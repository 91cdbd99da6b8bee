"""The repository crawl: everything one repository holds now, read through a `RegistryClient`.

`snapshot_repository(client, repository)` lists the tags, reads each tag's manifest, walks indexes
down to their children and fetches the configs the images name, into a `records.RepositorySnapshot`.
It uses only the client's public operations; the requests of a batch go out concurrently through
`RegistryClient.map_requests`, while parsing and recording stay in the calling thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .builders import build_artifact_record, build_image_record, build_index_record, build_schema1_record
from .client import RegistryClient
from .content import MAX_CONFIG_BYTES, FetchedManifest
from .errors import ManifestError, ReferenceError, RegistryError, stops_snapshot
from .manifests import (
    ANNOTATION_REFERENCE_DIGEST,
    ANNOTATION_REFERENCE_TYPE,
    ParsedImageManifest,
    ParsedIndex,
    ParsedManifest,
    is_attestation_entry,
    parse_manifest,
)
from .media_types import MANIFEST_TYPES, READABLE_CHILD_TYPES
from .records import (
    KIND_ARTIFACT,
    ImageRecord,
    IndexChild,
    IndexRecord,
    ManifestFailure,
    ManifestRecord,
    Platform,
    RepositorySnapshot,
)
from .reference import validate_digest, validate_repository, validate_tag
from .schema1 import ParsedSchema1

MAX_INDEX_DEPTH = 8  # an index may name an index to any depth (image-spec); real ones use 1 or 2 levels
MAX_INDEX_CHILDREN = 4096  # a 4 MiB index holds ~20,000 descriptors; real ones hold tens
MAX_SCHEMA1_LAYERS = 1024  # one blob HEAD per layer
# Layers of one image or artifact manifest. Docker stops at 128 (overlay2's depth); a 4 MiB manifest
# holds ~25,000, each a row to write and a prefix chain to hash, for no image anyone runs.
MAX_MANIFEST_LAYERS = 1024
SNAPSHOT_BATCH = 256  # tags in flight per batch: bounds the manifest bytes held at once

# "Which of these digests do you already have?" -- asked by a snapshot of its caller (the ingest side),
# always from the calling thread, so the answer may come from a database connection bound to it.
KnownDigests = Callable[[Collection[str]], Collection[str]]

# Tags that name no image (containers/image, regclient and cosign use these conventions):
# - the referrers tag schema (distribution-spec "Referrers Tag Schema"): `<alg>-<hex>` naming the
#   subject, an index of its referrers; cosign adds `.sig`, `.att` and `.sbom` to the same form.
_REFERRERS_TAG = re.compile(r"^(sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})(?:\.([A-Za-z0-9_-]{1,64}))?$")
_ARTIFACT_SUFFIXES = {"sig": "signature", "att": "attestation", "sbom": "sbom"}


def classify_tag(tag: str) -> tuple[str, str] | None:
    """(what, subject digest) for a referrers / signature / attestation / SBOM tag; None for others.

    `sha256-<hex>` is "referrers"; with `.sig`, `.att` or `.sbom` it is "signature", "attestation" or
    "sbom" (cosign); with another suffix, "artifact". Only the digest form counts: `v1.sig` is a tag
    like any other, since nothing says it is about an image.
    """
    m = _REFERRERS_TAG.match(tag)
    if m is None:
        return None
    subject, suffix = m.group(1).replace("-", ":", 1), m.group(2)
    what = "referrers" if suffix is None else _ARTIFACT_SUFFIXES.get(suffix, "artifact")
    return what, subject


def _failure(reference: str, exc: RegistryError) -> ManifestFailure:
    return ManifestFailure(
        reference=reference, kind=type(exc).__name__, message=str(exc), transient=exc.transient
    )


def snapshot_repository(
    client: RegistryClient,
    repository: str,
    *,
    tags: Iterable[str] | None = None,
    previous: Mapping[str, str] | None = None,
    known_manifests: KnownDigests | None = None,
    known_configs: KnownDigests | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RepositorySnapshot:
    """Read everything one repository holds now: tags, manifests (indexes and children), configs.

    1. List the tags (or take the ones given, deduplicated) to the end of the list before any
       manifest is asked for, then read them in batches of `SNAPSHOT_BATCH`. A failure of the listing
       raises, so a list the client refuses (past `max_tags`, a pagination loop) costs its pages only,
       not a manifest GET per tag listed before the refusal. The names held are bounded by the
       client's `max_tags` (`MAX_TAGS`), as the snapshot's `tags` are anyway.
    2. GET each tag's manifest; parse it, once per digest even if several tags point at it.
       Referrers, signature, attestation and SBOM tags (`classify_tag`) are read too, since their
       manifests are stored, but recorded as artifacts linked to the digest in their name.
    3. An image: fetch its config (cached by digest) and record an `ImageRecord`. An artifact (an
       OCI artifact, a BuildKit attestation): record it without reading its config. A schema 1
       manifest: its layer sizes come from blob HEADs.
    4. An index: record an `IndexRecord`; fetch each child by digest (a visited set, a depth and a
       width cap), check it against the entry (digest, size, media type) and record it with the
       entry's platform (the config's if absent). Children of a type that is no manifest are
       `skipped`, not failed.
    5. A tag or child that cannot be read (malformed, digest mismatch, 404, 5xx, over a limit)
       becomes a `ManifestFailure` and the rest goes on. `TransportError` is not caught: a registry
       that stopped answering fails the snapshot, to be retried whole. Nor is a `PolicyError` that
       refuses the registry's own origin or its token realm (`registry_wide`): the snapshot fails
       with its message; a refused redirect target (blob storage) fails that one tag.

    Concurrency: the manifest GETs of a batch, then the configs and index children they name
    (level by level), are sent the client's `max_concurrency` at a time (`RegistryClient.map_requests`)
    over its kept-alive connections; parsing and recording stay in the calling thread, in tag order.

    What the caller already has is not fetched again (both callbacks are called from this thread):

    - `previous` (tag -> digest, an incremental rescan): each tag is asked with a HEAD first
      (distribution-spec "Checking if content exists"); a tag whose digest is unchanged costs that
      one request and gets no record. A changed or new tag is read by the digest the HEAD gave.
    - `known_manifests(digests)`: the digests the caller holds with their layers and children; a
      tag or index child naming one is not read further and has no record here.
    - `known_configs(digests)`: the config digests the caller holds; an image naming one is
      recorded from its manifest alone (`ImageRecord.config_known`), its config not fetched.

    `progress(done, listed)` is called from this thread after each batch: tags read (or failed) so
    far, and the tags listed (all of them, the list being read first).

    A tag whose manifest failed is in `failures` only, not in `tags`. A digest among `tags` (a one-digest
    scan) is read and recorded like a tag but, not being a tag, is not in `tags`.
    """
    validate_repository(repository)
    # The whole list first: its cap (or a loop) is only met at its end, and a refusal then must not
    # follow a manifest GET per tag read so far (an endless `Link` chain: 100,000 of them, all dropped).
    names = list(client.iter_tags(repository) if tags is None else dict.fromkeys(tags))
    run = _SnapshotRun(client, repository, known_manifests=known_manifests, known_configs=known_configs)
    done = 0
    for batch in _batches(names, SNAPSHOT_BATCH):
        run.read_batch(batch, previous=previous)
        done += len(batch)
        if progress is not None:
            progress(done, len(names))
    return run.snapshot()


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in lists of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _known_config_record(
    *, fetched: FetchedManifest, manifest: ParsedImageManifest, platform: Platform | None
) -> ImageRecord:
    """An image whose config the caller already has: the manifest's own facts, the rest left to it."""
    return ImageRecord(
        digest=fetched.digest,
        media_type=manifest.media_type,
        size=fetched.size,
        config=manifest.config,
        layers=manifest.layers,
        platform=platform or Platform(),
        created=None,
        subject=manifest.subject,
        annotations=dict(manifest.annotations),
        config_known=True,
    )


def _annotated_subject(child: IndexChild) -> str:
    value = child.annotations.get(ANNOTATION_REFERENCE_DIGEST, "")
    try:
        return validate_digest(value) if value else ""
    except ReferenceError:
        return ""


@dataclass
class _Batch:
    """Tags read together, and where each stands.

    `outcome` is what a tag came to: an error, a digest needing no record (unchanged, or held by the
    caller), or manifest bytes to record. `to_get` maps each tag not settled yet to the reference to
    GET: the tag itself, or the digest its HEAD named.
    """

    tags: list[str]
    outcome: dict[str, RegistryError | str | FetchedManifest] = field(default_factory=dict)
    artifacts: dict[str, tuple[str, str]] = field(default_factory=dict)  # tag -> (what, subject)
    to_get: dict[str, str] = field(default_factory=dict)

    def settle(self, tag: str, result: RegistryError | str) -> None:
        """`tag` came to `result` with no manifest to GET."""
        self.outcome[tag] = result
        del self.to_get[tag]

    def fetched(self) -> list[tuple[FetchedManifest, bool]]:
        """The manifests fetched, in tag order, each with whether its tag names an artifact."""
        return [
            (got, tag in self.artifacts)
            for tag, got in self.outcome.items()
            if isinstance(got, FetchedManifest)
        ]


class _SnapshotRun:
    """The state of one `snapshot_repository` call: the tags read so far, and the manifests recorded
    or failed, by digest. Each batch of tags goes through `read_batch`; `snapshot` is the result."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        *,
        known_manifests: KnownDigests | None = None,
        known_configs: KnownDigests | None = None,
    ) -> None:
        self.client = client
        self.repository = repository
        self.records: dict[str, ManifestRecord] = {}
        self.failed: dict[str, RegistryError] = {}
        self.failures: list[ManifestFailure] = []
        self.skipped: list[ManifestFailure] = []
        self._known_manifests = known_manifests
        self._known_configs = known_configs
        self._answers: dict[tuple[bool, str], bool] = {}  # (is config, digest) -> known to the caller
        self._parsed: dict[tuple[str, str], ParsedManifest] = {}
        self.prefetched: dict[str, FetchedManifest | RegistryError] = {}
        self.config_errors: dict[str, RegistryError] = {}
        self.tags: dict[str, str] = {}  # tag -> digest, for the snapshot
        self.artifact_tags: dict[str, str] = {}  # tag -> what `classify_tag` says it names
        self.unchanged = 0

    # -- tags, batch by batch ---------------------------------------------------------------------

    def read_batch(self, tags: list[str], *, previous: Mapping[str, str] | None) -> None:
        """Read one batch: check its tags, HEAD them against `previous` (a rescan), GET the manifests
        still needed, read ahead what they name, then record every tag in order."""
        batch = self._classify(tags)
        if previous is not None:
            self._compare(batch, previous)
        self._fetch(batch)
        self.prefetch(batch.fetched())
        self._record_batch(batch)

    def _classify(self, tags: list[str]) -> _Batch:
        """A batch of `tags`: a malformed one fails here, an artifact tag (`classify_tag`) is marked."""
        batch = _Batch(tags)
        for tag in tags:
            by_digest = ":" in tag
            artifact = None if by_digest else classify_tag(tag)
            if artifact is not None:
                self.artifact_tags[tag] = artifact[0]
                batch.artifacts[tag] = artifact
            try:
                validate_digest(tag) if by_digest else validate_tag(tag)
            except ReferenceError as exc:
                batch.outcome[tag] = exc
                continue
            batch.to_get[tag] = tag
        return batch

    def _compare(self, batch: _Batch, previous: Mapping[str, str]) -> None:
        """HEAD each tag: one still at its `previous` digest is settled unchanged, the others are read
        by the digest the HEAD named; a digest the caller holds needs no GET."""
        client, repository = self.client, self.repository
        asked = list(batch.to_get)
        # A digest names itself: only tags are asked.
        heads = client.map_requests(lambda t: t if ":" in t else client.head_manifest(repository, t), asked)
        for tag, head in zip(asked, heads, strict=True):
            if isinstance(head, RegistryError):
                batch.settle(tag, head)
            elif ":" not in tag and previous.get(tag) == head:
                batch.settle(tag, head)
                self.unchanged += 1
            else:
                batch.to_get[tag] = head  # what the HEAD named, even if the tag moves now
        known = self.known(batch.to_get.values())
        for tag, digest in list(batch.to_get.items()):
            if digest in known:
                batch.settle(tag, digest)

    def _fetch(self, batch: _Batch) -> None:
        """GET the manifests still needed, concurrently; one whose digest the caller holds needs no
        record, only its digest."""
        client, repository = self.client, self.repository
        gets = client.map_requests(
            lambda ref: client.get_manifest(repository, ref), list(batch.to_get.values())
        )
        batch.outcome.update(zip(batch.to_get, gets, strict=True))
        known = self.known([g.digest for g in gets if isinstance(g, FetchedManifest)])
        for tag in batch.to_get:
            got = batch.outcome[tag]
            if isinstance(got, FetchedManifest) and got.digest in known:
                batch.outcome[tag] = got.digest

    def _record_batch(self, batch: _Batch) -> None:
        """Record each tag's manifest, in tag order; a tag that failed goes to `failures`, not `tags`."""
        for tag in batch.tags:
            got = batch.outcome[tag]
            if isinstance(got, RegistryError):
                self.failures.append(_failure(tag, got))
                continue
            if isinstance(got, FetchedManifest):
                error = self.record(got, reference=tag, artifact=batch.artifacts.get(tag))
                if error is not None:
                    self.failures.append(_failure(tag, error))
                    continue
                got = got.digest
            if ":" not in tag:  # a digest scanned on its own is no tag
                self.tags[tag] = got

    def snapshot(self) -> RepositorySnapshot:
        """What the run read, as the output contract."""
        return RepositorySnapshot(
            registry_url=self.client.base_url,
            repository=self.repository,
            tags=self.tags,
            manifests=tuple(self.records.values()),
            failures=tuple(self.failures),
            skipped=tuple(self.skipped),
            artifact_tags=self.artifact_tags,
            unchanged=self.unchanged,
        )

    # -- what the caller has, and reading ahead -------------------------------------------------

    def _ask(self, digests: Iterable[str], *, config: bool) -> set[str]:
        callback = self._known_configs if config else self._known_manifests
        if callback is None:
            return set()
        digests = set(digests)
        new = [d for d in digests if (config, d) not in self._answers]
        if new:
            yes = set(callback(new))
            self._answers.update(((config, d), d in yes) for d in new)
        return {d for d in digests if self._answers[(config, d)]}

    def known(self, digests: Iterable[str]) -> set[str]:
        """The manifest digests among `digests` the caller already holds (asked once per digest)."""
        return self._ask(digests, config=False)

    def config_known(self, digest: str) -> bool:
        """True when the caller holds the config `digest` and this client has not parsed it already."""
        if self.client.cached_config(digest) is not None:
            return False
        return bool(self._ask([digest], config=True))

    def parse(self, fetched: FetchedManifest) -> ParsedManifest:
        """`parse_manifest`, once per digest and served type (reading ahead parses first)."""
        key = (fetched.digest, fetched.media_type)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = parse_manifest(fetched.content, fetched.media_type)
        return parsed

    def prefetch(self, level: list[tuple[FetchedManifest, bool]]) -> None:
        """Fetch ahead, concurrently, what `record` will ask for, level by level: the configs the
        images name and the children the indexes name. `level` holds (manifest, is an artifact).

        Only a cache: `record` checks everything again and fetches what is missing itself, so an
        error here (stored, raised where `record` would have met it) changes no outcome.
        """
        for depth in range(MAX_INDEX_DEPTH + 1):
            configs, children = self._named_by(level, depth)
            self._prefetch_configs(configs)
            level = self._prefetch_children(children)
            if not level:
                return

    def _named_by(
        self, level: list[tuple[FetchedManifest, bool]], depth: int
    ) -> tuple[dict[str, ParsedImageManifest], dict[str, IndexChild]]:
        """The configs the level's images name (by config digest) and the children its indexes name,
        for the manifests not recorded or failed yet; `depth` is the level's index depth."""
        configs: dict[str, ParsedImageManifest] = {}
        children: dict[str, IndexChild] = {}
        for fetched, artifact in level:
            if fetched.digest in self.records or fetched.digest in self.failed:
                continue
            try:
                parsed = self.parse(fetched)
            except RegistryError:
                continue  # `record` reports it
            if isinstance(parsed, ParsedImageManifest):
                config = parsed.config
                if (
                    not artifact
                    and parsed.kind != KIND_ARTIFACT
                    and config.size <= MAX_CONFIG_BYTES
                    and len(parsed.layers) <= MAX_MANIFEST_LAYERS  # deeper, `record` fails it unread
                ):
                    configs.setdefault(config.digest, parsed)
            elif (
                isinstance(parsed, ParsedIndex)
                and depth < MAX_INDEX_DEPTH  # deeper, `record` fails the index unread
                and len(parsed.children) <= MAX_INDEX_CHILDREN
            ):
                for child in parsed.children:
                    if child.media_type in READABLE_CHILD_TYPES and child.digest not in self.records:
                        children.setdefault(child.digest, child)
        return configs, children

    def _prefetch_configs(self, configs: dict[str, ParsedImageManifest]) -> None:
        """Fetch the configs neither cached by the client nor held by the caller; keep the errors."""
        client = self.client
        todo = [
            m for d, m in configs.items() if d not in self.config_errors and client.cached_config(d) is None
        ]
        known = self._ask([m.config.digest for m in todo], config=True)
        todo = [m for m in todo if m.config.digest not in known]
        results = client.map_requests(lambda m: client.get_config(self.repository, m), todo)
        for m, result in zip(todo, results, strict=True):
            if isinstance(result, RegistryError):
                self.config_errors[m.config.digest] = result

    def _prefetch_children(self, children: dict[str, IndexChild]) -> list[tuple[FetchedManifest, bool]]:
        """Fetch the children neither held by the caller nor fetched already; the ones that came are
        the next level, each with whether its entry marks an artifact."""
        known = self.known(children)
        wanted = [c for d, c in children.items() if d not in known and d not in self.prefetched]
        client = self.client
        results = client.map_requests(lambda c: client.get_manifest(self.repository, c.digest), wanted)
        level: list[tuple[FetchedManifest, bool]] = []
        for child, got in zip(wanted, results, strict=True):
            self.prefetched[child.digest] = got
            if isinstance(got, FetchedManifest):
                level.append((got, bool(is_attestation_entry(child) or child.artifact_type)))
        return level

    # -- recording ------------------------------------------------------------------------------

    def record(
        self,
        fetched: FetchedManifest,
        *,
        reference: str,
        platform: Platform | None = None,
        depth: int = 0,
        expected_type: str | None = None,
        artifact: tuple[str, str] | None = None,
    ) -> RegistryError | None:
        """Record `fetched` (and, for an index, its children); return the error if it can't be read.

        `artifact` is (artifact type, subject digest) when the way we reached this manifest (a tag's
        name, an index entry's annotations) says it is an artifact whatever its content.
        """
        if fetched.digest in self.records:
            return None
        if fetched.digest in self.failed:
            return self.failed[fetched.digest]
        try:
            record = self._build(
                fetched,
                reference=reference,
                platform=platform,
                expected_type=expected_type,
                depth=depth,
                artifact=artifact,
            )
        except RegistryError as exc:
            if stops_snapshot(exc):
                raise
            self.failed[fetched.digest] = exc
            return exc
        self.records[fetched.digest] = record  # before the children: the visited set stops loops
        if isinstance(record, IndexRecord):
            self._children(record, depth, artifact)
        return None

    def _build(
        self,
        fetched: FetchedManifest,
        *,
        reference: str,
        platform: Platform | None,
        expected_type: str | None,
        depth: int,
        artifact: tuple[str, str] | None,
    ) -> ManifestRecord:
        client, repository = self.client, self.repository
        where: dict[str, Any] = {
            "registry": client.base_url,
            "repository": repository,
            "reference": reference,
        }
        try:
            parsed = self.parse(fetched)
        except ManifestError as exc:
            raise exc.locate(**where) from None
        if expected_type is not None and parsed.media_type != expected_type:
            # image-spec descriptor.md: the content's mediaType must be the one its descriptor names.
            raise ManifestError(
                f"index entry says {expected_type} but the manifest is {parsed.media_type}", **where
            )
        if isinstance(parsed, ParsedIndex):
            if depth >= MAX_INDEX_DEPTH:
                raise ManifestError(f"index nested deeper than {MAX_INDEX_DEPTH} levels", **where)
            if len(parsed.children) > MAX_INDEX_CHILDREN:
                raise ManifestError(
                    f"index of {len(parsed.children)} entries is over the {MAX_INDEX_CHILDREN} limit", **where
                )
            return build_index_record(digest=fetched.digest, size=fetched.size, index=parsed)
        if isinstance(parsed, ParsedSchema1):
            return self._schema1(fetched, parsed, platform, where)
        if len(parsed.layers) > MAX_MANIFEST_LAYERS:
            raise ManifestError(
                f"manifest of {len(parsed.layers)} layers is over the {MAX_MANIFEST_LAYERS} limit", **where
            )
        if parsed.kind == KIND_ARTIFACT or artifact is not None:
            artifact_type, subject = artifact or ("", "")
            return build_artifact_record(
                digest=fetched.digest,
                size=fetched.size,
                manifest=parsed,
                artifact_type=artifact_type,
                subject=subject,
                platform=platform,
            )
        config_error = self.config_errors.get(parsed.config.digest)
        if config_error is not None:
            raise config_error
        if self.config_known(parsed.config.digest):
            return _known_config_record(fetched=fetched, manifest=parsed, platform=platform)
        config = client.get_config(repository, parsed)
        record: ImageRecord = build_image_record(
            digest=fetched.digest, size=fetched.size, manifest=parsed, config=config, platform=platform
        )
        return record

    def _schema1(
        self,
        fetched: FetchedManifest,
        parsed: ParsedSchema1,
        platform: Platform | None,
        where: dict[str, Any],
    ) -> ImageRecord:
        """Schema 1 names its layers without sizes: HEAD each distinct blob, or fail as unsupported."""
        distinct = list(dict.fromkeys(parsed.layers))
        if len(distinct) > MAX_SCHEMA1_LAYERS:
            raise ManifestError(f"unsupported: schema 1 manifest with {len(distinct)} layers", **where)
        sizes: dict[str, int] = {}
        for digest in distinct:
            try:
                sizes[digest] = self.client.blob_size(self.repository, digest)
            except RegistryError as exc:
                if stops_snapshot(exc):
                    raise
                raise ManifestError(
                    f"unsupported: Docker schema 1 manifest whose layer sizes cannot be read "
                    f"(blob {digest}: {exc})",
                    **where,
                ) from None
        return build_schema1_record(
            digest=fetched.digest, size=fetched.size, manifest=parsed, sizes=sizes, platform=platform
        )

    def _children(self, index: IndexRecord, depth: int, artifact: tuple[str, str] | None) -> None:
        known = self.known(c.digest for c in index.children)
        for child in index.children:
            if child.digest in self.records or child.digest in self.failed or child.digest in known:
                continue
            if child.media_type not in READABLE_CHILD_TYPES:
                self.skipped.append(
                    ManifestFailure(
                        reference=child.digest,
                        kind="Skipped",
                        message=f"index {index.digest} entry of media type {child.media_type!r} not read",
                    )
                )
                continue
            try:
                ahead = self.prefetched.pop(child.digest, None)
                if isinstance(ahead, RegistryError):
                    raise ahead
                fetched = ahead or self.client.get_manifest(self.repository, child.digest)
                if fetched.size != child.size:
                    raise ManifestError(
                        f"manifest is {fetched.size} bytes, the index entry says {child.size}",
                        registry=self.client.base_url,
                        repository=self.repository,
                        reference=child.digest,
                    )
            except RegistryError as exc:
                if stops_snapshot(exc):
                    raise
                self.failed[child.digest] = exc
                self.failures.append(_failure(child.digest, exc))
                continue
            child_artifact = artifact
            if is_attestation_entry(child):
                kind = child.annotations.get(ANNOTATION_REFERENCE_TYPE) or "attestation-manifest"
                child_artifact = (child.artifact_type or kind, _annotated_subject(child))
            elif child.artifact_type and child_artifact is None:
                child_artifact = (child.artifact_type, index.subject)
            error = self.record(
                fetched,
                reference=child.digest,
                platform=child.platform,
                depth=depth + 1,
                expected_type=child.media_type if child.media_type in MANIFEST_TYPES else None,
                artifact=child_artifact,
            )
            if error is not None:
                self.failures.append(_failure(child.digest, error))
