"""`{% load sizes %}` then `{{ n|size }}`: bytes as `analytics.infra.units.human_size` writes them
(decimal, like docker). Django's `filesizeformat` divides by 1024 but labels "MB": not used."""

from __future__ import annotations

from django import template

from analytics.infra.units import human_size

register = template.Library()


@register.filter
def size(value: int | None) -> str:
    return human_size(value)
