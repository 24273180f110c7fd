"""Exceptions raised by zarr-dask-utils.

Every exception derives from :class:`ZarrDaskUtilsError` and from the builtin a caller would
catch for the same situation (``FileNotFoundError``, ``ValueError``, ``PermissionError``,
``ConnectionError``, ``TimeoutError``).  Each class has a stable, append-only ``kind`` code that
``zdu --json`` prints, so scripts can branch on it without parsing messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

__all__ = [
    "ChunkUnreadableError",
    "ClusterConnectionError",
    "CodecQuirkError",
    "ConcurrentModificationError",
    "DraftV3StoreError",
    "EndpointUnreachableError",
    "InvalidOptionError",
    "LockTimeoutError",
    "MetadataInvalidError",
    "NotAZarrStoreError",
    "OutputNotWritableError",
    "OverlappingLocationsError",
    "ReadOnlyStoreError",
    "StoreAccessDeniedError",
    "StoreNotFoundError",
    "StoreNotVisibleError",
    "StoreUnreadableError",
    "ZarrDaskUtilsError",
    "ZarrDaskUtilsWarning",
    "exception_chain",
]


class ZarrDaskUtilsError(Exception):
    """Base class of every error raised on purpose by zarr-dask-utils.

    The message is one paragraph: where, what was expected, what was found, what to do next.
    """

    kind: ClassVar[str] = "error"

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-safe description (``kind``, ``type``, ``message``)."""
        return {"kind": self.kind, "type": type(self).__name__, "message": str(self)}


class StoreNotFoundError(ZarrDaskUtilsError, FileNotFoundError):
    """Nothing exists at the given location (no directory, no object prefix, no bucket)."""

    kind = "store-not-found"


class NotAZarrStoreError(ZarrDaskUtilsError, ValueError):
    """Something exists at the location, but it holds no Zarr metadata document."""

    kind = "not-a-zarr-store"


class DraftV3StoreError(NotAZarrStoreError):
    """The location holds a pre-1.0 draft-v3 store (``meta/root/…`` + ``data/root/…`` layout).

    zarr-python 2.11 to 2.18 wrote it as "experimental v3"; zarr-python 3 (final v3 spec: one
    ``zarr.json`` per node) cannot read it, so neither can zarr-dask-utils.
    """

    kind = "draft-v3-store"


class MetadataInvalidError(ZarrDaskUtilsError, ValueError):
    """A metadata document the operation needs cannot be parsed (the message names it)."""

    kind = "metadata-json-invalid"


class InvalidOptionError(ZarrDaskUtilsError, ValueError):
    """An argument or option is invalid, or would be silently ignored."""

    kind = "invalid-option"


class ReadOnlyStoreError(ZarrDaskUtilsError, PermissionError):
    """A modification was requested on a store that cannot be written."""

    kind = "read-only"


class StoreAccessDeniedError(ZarrDaskUtilsError, PermissionError):
    """The storage service refused the credentials or the request."""

    kind = "access-denied"


class EndpointUnreachableError(ZarrDaskUtilsError, ConnectionError):
    """The storage endpoint could not be reached (connection refused, DNS, timeout)."""

    kind = "endpoint-unreachable"


class ClusterConnectionError(ZarrDaskUtilsError, TimeoutError):
    """No Dask scheduler answered at the given address or scheduler file."""

    kind = "cluster-unreachable"


class LockTimeoutError(ZarrDaskUtilsError, TimeoutError):
    """A cluster lock (``zdu-lock/…``) could not be acquired within the timeout."""

    kind = "lock-timeout"


class ConcurrentModificationError(ZarrDaskUtilsError, RuntimeError):
    """A storage key changed between the read and the write of a read-modify-write."""

    kind = "concurrent-modification"


class ChunkUnreadableError(ZarrDaskUtilsError, ValueError):
    """A stored chunk cannot be decoded, so an operation that needs its values cannot go on."""

    kind = "chunk-unreadable"


class OverlappingLocationsError(InvalidOptionError):
    """A location an operation writes equals, contains or lies inside one it reads or writes."""

    kind = "overlapping-locations"


class OutputNotWritableError(ZarrDaskUtilsError, PermissionError):
    """An output location failed the write probe done before the work started."""

    kind = "output-not-writable"


class StoreUnreadableError(ZarrDaskUtilsError, OSError):
    """Part of a store cannot be read: a folder without permission, a symbolic link loop.

    Also raised for a store path that itself loops (a symbolic link leading back to itself).
    """

    kind = "store-unreadable"


class CodecQuirkError(MetadataInvalidError):
    """A codec setting the source's writer means differently from zarr-python (read wrongly).

    E.g. netCDF-C's shuffle ``elementsize`` 0: a copy would hold wrong values, so an operation
    that copies values refuses the source until ``zdu repair`` fixes the document.
    """

    kind = "shuffle-elementsize-zero"


class StoreNotVisibleError(ZarrDaskUtilsError, FileNotFoundError):
    """The workers of the user's cluster do not see a local path the operation uses.

    They run on other hosts (or mount other filesystems): the path is missing there, holds
    another store, or (an output) cannot be written.  Checked once per operation, up front.
    """

    kind = "store-not-visible-to-workers"


class ZarrDaskUtilsWarning(UserWarning):
    """Base class of the warnings zarr-dask-utils emits."""


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """*exc*, then its ``__cause__`` (or ``__context__``), and so on; each exception once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
