"""An OCI artifact (artifactType, empty config, subject) pushed to a real registry: recorded as what it is."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.models import Manifest, Registry, Scan, ScanError, Tag
from analytics.scans.start import scan_create, scan_request_resolve, scan_run_inline
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.registry import RegistryServer, blobstore_bytes, blobstore_digests

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/spdx+json"


@pytest.fixture
def scratch() -> Iterator[RegistryServer]:
    with RegistryServer() as reg:
        yield reg


def skopeo(*args: str) -> bytes:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, timeout=120).stdout


def write_artifact_layout(root: Path, subject: dict[str, object], sbom: bytes) -> tuple[str, bytes]:
    """An OCI layout holding one artifact manifest (image-spec manifest.md, "Guidelines for Artifact
    Usage")."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": {"mediaType": EMPTY_CONFIG, "digest": blob(b"{}"), "size": 2},
        "layers": [{"mediaType": SBOM_TYPE, "digest": blob(sbom), "size": len(sbom)}],
        "subject": subject,
    }
    raw = json.dumps(manifest, indent=2).encode()
    digest = blob(raw)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(raw),
                "annotations": {"org.opencontainers.image.ref.name": "sbom"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return digest, raw


def test_oci_artifact_is_recorded_with_its_subject_and_counted_in_storage(test_registry, scratch, tmp_path):
    tls = ("--src-tls-verify=false", "--dest-tls-verify=false")
    skopeo(
        "copy",
        *tls,
        f"docker://{test_registry.ref('apps/web', '1.0')}",
        f"docker://{scratch.host}/team/app:1.0",
    )
    subject_raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{scratch.host}/team/app:1.0")
    subject_doc = json.loads(subject_raw)
    subject_digest = "sha256:" + hashlib.sha256(subject_raw).hexdigest()
    before = dict(blobstore_digests(scratch.root))

    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "name": "team/app"}).encode()
    subject = {"mediaType": subject_doc["mediaType"], "digest": subject_digest, "size": len(subject_raw)}
    digest, raw = write_artifact_layout(tmp_path / "layout", subject, sbom)
    # skopeo 1.9 copies the artifact as it is (same bytes, same digest); then the cosign-style tag.
    skopeo("copy", *tls, f"oci:{tmp_path / 'layout'}:sbom", f"docker://{scratch.host}/team/app:sbom")
    sig_tag = f"sha256-{subject_digest.split(':')[1]}.sig"
    skopeo("copy", *tls, f"oci:{tmp_path / 'layout'}:sbom", f"docker://{scratch.host}/team/app:{sig_tag}")
    pushed = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{scratch.host}/team/app:sbom")
    assert pushed == raw
    added = {d: s for d, s in blobstore_digests(scratch.root).items() if d not in before}
    sbom_digest = "sha256:" + hashlib.sha256(sbom).hexdigest()
    assert added == {
        digest: len(raw),
        sbom_digest: len(sbom),
        "sha256:" + hashlib.sha256(b"{}").hexdigest(): 2,
    }

    request = scan_request_resolve(target=f"{scratch.host}/team/app")
    scan = scan_create(registry=request.registry, repository=request.repository)
    scan = scan_run_inline(scan_id=scan.id)
    assert scan.status == Scan.Status.SUCCEEDED, list(ScanError.objects.filter(scan=scan).values())

    artifact = Manifest.objects.get(digest=digest)
    assert (artifact.kind, artifact.subject, artifact.artifact_type) == (
        "artifact",
        subject_digest,
        SBOM_TYPE,
    )
    assert artifact.size == len(raw) and artifact.layers_size == len(sbom)
    assert Manifest.objects.get(digest=subject_digest).kind == "image"
    tags = dict(
        Tag.objects.filter(repository=request.repository, removed_at=None).values_list("name", "manifest")
    )
    assert tags == {
        "1.0": Manifest.objects.get(digest=subject_digest).id,
        "sbom": artifact.id,
        sig_tag: artifact.id,
    }

    summary = dedup_summary(scope=Scope(registry_id=Registry.objects.get(url=scratch.url).id))
    assert summary.images == 1  # the artifact is not an image
    assert summary.manifests == 2  # but it is held, and its bytes count
    assert summary.stored_bytes == blobstore_bytes(scratch.root)
    assert summary.stored_bytes - sum(before.values()) == len(raw) + len(sbom) + 2
