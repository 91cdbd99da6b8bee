"""Byte sizes for people, one rule everywhere (CLI, pages, admin, the charts' `human` in pages.js):
decimal units like `docker images` and `docker system df` (go-units `HumanSizeWithPrecision(size, 3)`),
so 4,803,176 bytes is "4.8 MB". Raw figures (the API, CSV, `--json`) stay integer bytes."""

from __future__ import annotations

UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(n: int | float | None, *, none: str = "") -> str:
    """`n` bytes with 3 significant digits in powers of 1000: 999 B, 28.2 kB, 4.8 MB, 3.42 GB."""
    if n is None:
        return none
    sign, size, i = ("-" if n < 0 else ""), abs(float(n)), 0
    while size >= 1000 and i < len(UNITS) - 1:
        size /= 1000
        i += 1
    # go-units prints 999,999 B as "1e+03kB"; carry the rounding up to the next unit instead
    if float(f"{size:.3g}") >= 1000 and i < len(UNITS) - 1:
        size /= 1000
        i += 1
    return f"{sign}{size:.3g} {UNITS[i]}"
