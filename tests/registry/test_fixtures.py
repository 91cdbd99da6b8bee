"""The manifest fixtures name each other by digest; an edit that breaks a digest breaks every test."""

from __future__ import annotations

import json

from tests.registry.fakes import FIXTURES, fixture, sha256


def test_every_digest_a_fixture_names_matches_the_fixture_it_names() -> None:
    by_digest = {sha256(p.read_bytes()): p.name for p in FIXTURES.glob("*.json")}
    checked = 0
    for path in FIXTURES.glob("*.json"):
        doc = json.loads(path.read_bytes())
        descriptors = [doc.get("config"), *doc.get("manifests", [])]
        for d in (d for d in descriptors if isinstance(d, dict) and "digest" in d):
            assert d["digest"] in by_digest, f"{path.name} names {d['digest']}, which no fixture has"
            assert d["size"] == len(fixture(by_digest[d["digest"]]))
            checked += 1
    assert checked == 12  # the config descriptors and index entries of every fixture
