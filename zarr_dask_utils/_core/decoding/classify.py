"""A decode error → the finding code a report gives it (pure: a table, first match wins).

Shared by both decoders (:mod:`.direct_decoder`, :mod:`.pipeline_decoder`) and every feature
that reports undecodable chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["classify_decode_error"]

_ERROR_PATTERNS: Sequence[tuple[str, str]] = (
    ("checksum", "chunk-checksum-mismatch"),
    ("reshape", "chunk-wrong-size"),
    ("buffer size", "chunk-wrong-size"),
    ("size", "chunk-wrong-size"),
)


def classify_decode_error(message: str) -> str:
    """Finding code for a decode exception message (a table, first match wins)."""
    lowered = message.lower()
    for pattern, code in _ERROR_PATTERNS:
        if pattern in lowered:
            return code
    return "chunk-decode-error"
