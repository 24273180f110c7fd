"""Parse chunk and pattern arguments of ``zdu analyze`` / ``zdu rechunk``."""

from __future__ import annotations

from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["parse_chunks", "parse_patterns"]


def parse_chunks(text: str | None) -> tuple[int, ...] | dict[str, int] | None:
    """``"100,10,10"`` → ``(100, 10, 10)``; ``"time=100,lat=10"`` → a mapping (-1: whole axis)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if parts and all("=" in p for p in parts):
            return {k.strip(): int(v) for k, v in (p.split("=", 1) for p in parts)}
        return tuple(int(p) for p in parts)
    except ValueError as err:
        raise InvalidOptionError(
            f"Chunks {text!r} are not integers: write e.g. 365,10,10 or time=365,lat=10 "
            "(-1 for a whole axis)."
        ) from err


def parse_patterns(values: tuple[str, ...]) -> Any:
    """``("time-series", "spatial=2")`` → ``{"time-series": 1.0, "spatial": 2.0}``."""
    if not values:
        return "sequential"
    out: dict[str, float] = {}
    for value in values:
        name, _, weight = value.partition("=")
        try:
            out[name] = float(weight) if weight else 1.0
        except ValueError as err:
            raise InvalidOptionError(
                f"--pattern {value!r}: the weight after '=' must be a number, e.g. spatial=2."
            ) from err
    return out
