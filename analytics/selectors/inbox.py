"""The events inbox as operators read it: per registry, how many events wait to be applied and since when
the oldest has waited.

Pending events are those not applied yet (`applied_at` null). Both partial indexes on them
(`registry_event_pending`: registry, repository, id; `registry_event_pending_age`: received_at) hold
pending rows only, so these reads cost what is pending, which a running worker keeps near nothing,
never the applied history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from analytics.models import Registry, RegistryEvent


@dataclass(frozen=True)
class RegistryInbox:
    registry_id: int
    registry: str  # the registry's name: a host, for operators only
    followed: bool
    pending: int
    oldest_received_at: datetime | None


def _pending() -> QuerySet[RegistryEvent]:
    return RegistryEvent.objects.filter(applied_at__isnull=True)


def registry_inbox_annotate(registries: QuerySet[Registry]) -> QuerySet[Registry]:
    """`registries` with `events_pending` (count) and `events_oldest_pending_at` (the oldest pending
    event's arrival, or null), each a subquery per registry row on the pending indexes."""
    mine = _pending().filter(registry=OuterRef("pk")).order_by()
    return registries.annotate(
        events_pending=Coalesce(Subquery(mine.values("registry").annotate(n=Count("id")).values("n")[:1]), 0),
        events_oldest_pending_at=Subquery(mine.order_by("received_at").values("received_at")[:1]),
    )


def inbox_by_registry() -> list[RegistryInbox]:
    """Every followed registry (pending or not, so that its series does not vanish when the inbox
    empties) and every registry with pending events (one no longer followed may still have some), by
    name: one grouped read of the pending rows, one of the registries."""
    waiting = {
        row["registry_id"]: row
        for row in _pending()
        .order_by()
        .values("registry_id")
        .annotate(pending=Count("id"), oldest=Min("received_at"))
    }
    registries = (
        Registry.objects.filter(Q(events_secret_encrypted__gt="") | Q(id__in=list(waiting)))
        .order_by("name")
        .only("id", "name", "events_secret_encrypted")
    )
    out = []
    for r in registries:
        row = waiting.get(r.id, {})
        out.append(
            RegistryInbox(
                registry_id=r.id,
                registry=r.name,
                followed=r.followed,
                pending=row.get("pending", 0),
                oldest_received_at=row.get("oldest"),
            )
        )
    return out


def inbox_oldest_pending_at() -> datetime | None:
    """When the oldest event still waiting anywhere arrived (null: nothing waits): the first entry of
    `registry_event_pending_age`."""
    return _pending().order_by("received_at").values_list("received_at", flat=True).first()
