"""An image row as the API writes it equals DRF's own field-by-field representation of the same row: the
image serializer reads its fields straight off the row, and DRF's walk is the reference."""

from __future__ import annotations

from rest_framework import serializers

from analytics.api.serializers.content import ImageDetailSerializer, ImageSerializer
from analytics.models import RepositoryManifest
from analytics.selectors.images import image_sizes, image_tags
from analytics.selectors.pulls import image_pulls


def _rows(serializer_class, holdings, context):
    fast = serializer_class(holdings, many=True, context=context).data
    reference = [
        serializers.ModelSerializer.to_representation(serializer_class(context=context), h) for h in holdings
    ]
    return [dict(r) for r in fast], [dict(r) for r in reference]


def _holdings():
    return list(
        RepositoryManifest.objects.filter(manifest__kind="image")
        .select_related("repository__registry", "manifest", "manifest__config")
        .order_by("id")
    )


def _context(holdings):
    return {
        "sizes": image_sizes(holding_ids=[h.id for h in holdings]),
        "tags": image_tags(holdings=holdings),
        "pulls": image_pulls(holdings=holdings),
    }


def test_the_image_list_answers_drf_rows(world, client_user):
    listed = client_user.get("/api/v1/images/").json()["results"]
    holdings = _holdings()
    _, reference = _rows(ImageSerializer, holdings, _context(holdings))
    assert len(listed) == len(reference) >= 2
    assert listed == reference


def test_image_rows_equal_drf_field_by_field(world):
    holdings = _holdings()
    # one untagged and one with no created time, so the empty values are compared too
    RepositoryManifest.objects.filter(id=holdings[0].id).update(present=False)
    holdings[0].present = False
    holdings[1].manifest.created = None
    context = _context(holdings)
    fast, reference = _rows(ImageSerializer, holdings, context)
    assert fast == reference
    assert [list(r) for r in fast] == [list(r) for r in reference]  # the same order of keys
    assert any(r["tags"] for r in fast) and any(r["size_bytes"] for r in fast)

    # a subclass's own fields go through DRF's walk
    detail, detail_reference = _rows(ImageDetailSerializer, holdings[:1], {**context, "layers": []})
    assert detail == detail_reference and "layers" in detail[0]
