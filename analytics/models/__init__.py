"""The data model of DESIGN section 2: content-addressed, like a registry.

Blobs and manifests are global and unique by digest; which repository holds which manifest is
`RepositoryManifest`. Every uniqueness constraint below is what makes a re-run of ingest rewrite the
same rows instead of adding new ones.

One module per kind of row; every model is importable from here, as Django expects.
"""

from analytics.models.accounts import ApiToken
from analytics.models.content import (
    Blob,
    HistoryEntry,
    IndexEntry,
    Manifest,
    ManifestBlob,
    ManifestLayer,
    RepositoryManifest,
    Tag,
    TagEvent,
)
from analytics.models.engines import (
    Engine,
    EngineHistoryEntry,
    EngineImage,
    EngineImageLayer,
    EngineLayer,
    EngineScan,
)
from analytics.models.events import ManifestPullDay, ManifestPulls, RegistryEvent
from analytics.models.figures import (
    BlobLine,
    BlobRegistries,
    DiffIdCopies,
    DiffIdEpoch,
    LayerChain,
    ManifestRegistries,
    NamespaceBlob,
    NamespaceFigures,
    NamespaceManifestRef,
    RegistryAnswer,
    RegistryBlob,
    RegistryHeld,
    RegistryInstruction,
    RegistryManifestRef,
    RegistryMissedSaving,
    RegistryStaleBase,
    RepositoryBlob,
    ScopeFigures,
    SummaryFigures,
    SummarySnapshot,
)
from analytics.models.jobs import WhatIfJob
from analytics.models.policies import CleanupPolicy, PolicyEvaluation
from analytics.models.registries import REGISTRY_MAX_CONCURRENCY, REGISTRY_MAX_RATE, Registry, Repository
from analytics.models.scans import Scan, ScanError

__all__ = [
    "ApiToken",
    "Blob",
    "BlobLine",
    "BlobRegistries",
    "CleanupPolicy",
    "DiffIdCopies",
    "DiffIdEpoch",
    "Engine",
    "EngineHistoryEntry",
    "EngineImage",
    "EngineImageLayer",
    "EngineLayer",
    "EngineScan",
    "HistoryEntry",
    "IndexEntry",
    "LayerChain",
    "Manifest",
    "ManifestBlob",
    "ManifestLayer",
    "ManifestPullDay",
    "ManifestPulls",
    "ManifestRegistries",
    "NamespaceBlob",
    "NamespaceFigures",
    "NamespaceManifestRef",
    "PolicyEvaluation",
    "REGISTRY_MAX_CONCURRENCY",
    "REGISTRY_MAX_RATE",
    "Registry",
    "RegistryAnswer",
    "RegistryBlob",
    "RegistryEvent",
    "RegistryHeld",
    "RegistryInstruction",
    "RegistryManifestRef",
    "RegistryMissedSaving",
    "RegistryStaleBase",
    "Repository",
    "RepositoryBlob",
    "RepositoryManifest",
    "Scan",
    "ScanError",
    "ScopeFigures",
    "SummaryFigures",
    "SummarySnapshot",
    "Tag",
    "TagEvent",
    "WhatIfJob",
]
