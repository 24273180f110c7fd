"""Canonical locations: one name per place in storage, however the user spelled it.

``/data/x.zarr``, ``file:///data/x.zarr``, ``./x.zarr`` from ``/data``, a symlink to it, a
``LocalStore`` on it and an fsspec ``file`` store on it all name the same directory;
``s3://bucket/x.zarr`` and ``s3://bucket/x.zarr/`` the same prefix.  :class:`Canonical` is that
one name (a scheme, a namespace and a ``/``-separated path), so that

- cluster lock names are the same for every writer of one store (:mod:`~.concurrent.store`);
- an operation that writes a second location refuses, before writing anything, a target that
  equals, contains or lies inside its source (:func:`refuse_overlap`).

Two S3 URLs are compared on bucket and prefix only: the endpoint is not part of the name, so
two endpoints with the same bucket name count as one place (a refusal or a shared lock too
many, never one too few).  Stores without an address (``MemoryStore`` objects, unknown store
classes) are named by object identity.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from zarr_dask_utils._core.errors import OverlappingLocationsError

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from zarr_dask_utils._core.storage.locations import Location

__all__ = [
    "Canonical",
    "canonical_of_location",
    "canonical_of_store",
    "canonical_of_url",
    "overlap",
    "refuse_overlap",
]

Overlap = Literal["same", "inside", "contains"]

_URL = re.compile(r"^(?P<proto>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")
_USERINFO = re.compile(r"^[^/@]*@")
# fsspec protocol aliases that name the same storage
_ALIASES = {"local": "file", "s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az"}


@dataclass(frozen=True, slots=True)
class Canonical:
    """The canonical name of a place in storage.

    Attributes
    ----------
    scheme
        ``"file"`` (local paths, ``file://``, zip files), ``"s3"``, ``"gs"``, ``"memory"``,
        another fsspec protocol, or ``"object"`` for stores known only by identity.
    path
        ``/``-separated, without trailing ``/``: an absolute real path for ``file``,
        ``bucket/prefix`` for object stores, ``<Type>@<id>/<node>`` for ``object``.
    """

    scheme: str
    path: str

    @property
    def url(self) -> str:
        """A credential-free string form (a plain path for local files), e.g. for lock names."""
        return self.path if self.scheme == "file" else f"{self.scheme}://{self.path}"

    def child(self, node: str) -> Canonical:
        """The location of *node* (a ``/``-separated path) below this one."""
        node = _clean(node)
        if not node:
            return self
        return Canonical(self.scheme, f"{self.path.rstrip('/')}/{node}" if self.path else node)

    def __str__(self) -> str:
        return self.url


def _clean(path: str) -> str:
    """Collapse repeated ``/`` and ``.`` segments; strip ``/`` at both ends."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/".join(parts)


def _real_local(path: str) -> str:
    """Absolute path with ``~`` expanded and symlinks followed (also for a missing tail)."""
    return os.path.realpath(os.path.expanduser(path))


def canonical_of_url(url: str) -> Canonical:
    """The canonical name of a local path or an fsspec URL (credentials in it are dropped).

    Parameters
    ----------
    url
        ``/abs/x.zarr``, ``rel/x.zarr``, ``file:///abs/x.zarr``, ``s3://bucket/prefix/``,
        ``memory://x``, ``/abs/data.zip``, …

    Returns
    -------
    Canonical

    Examples
    --------
    >>> canonical_of_url("s3://bucket/a//b/").url
    's3://bucket/a/b'
    >>> canonical_of_url("file:///tmp/../tmp/x.zarr") == canonical_of_url("/tmp/x.zarr")
    True
    """
    match = _URL.match(url)
    if match is None:
        return Canonical("file", _real_local(url))
    proto = match.group("proto").lower()
    proto = _ALIASES.get(proto, proto)
    rest = match.group("rest")
    if proto == "file":
        return Canonical("file", _real_local(rest))
    rest = _USERINFO.sub("", rest) if proto not in ("memory",) else rest
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    if proto in ("http", "https"):
        return Canonical(proto, _clean(rest))
    return Canonical(proto, _clean(posixpath.normpath("/" + rest)))


def canonical_of_store(store: Store) -> Canonical:
    """The canonical name of a zarr store object (wrappers are looked through).

    ``LocalStore`` → its real root; ``ZipStore`` → its real file path; ``FsspecStore`` → its
    filesystem's protocol and path; anything else (``MemoryStore``, unknown classes) → object
    identity, so two such objects never compare equal.
    """
    from zarr.storage import FsspecStore, LocalStore, WrapperStore, ZipStore

    while isinstance(store, WrapperStore):
        store = store._store
    if isinstance(store, LocalStore):
        return Canonical("file", _real_local(str(store.root)))
    if isinstance(store, ZipStore):
        return Canonical("file", _real_local(str(store.path)))
    if isinstance(store, FsspecStore):
        protocol: Any = store.fs.protocol
        proto = protocol if isinstance(protocol, str) else protocol[0]
        return canonical_of_url(f"{proto}://{store.path}")
    return Canonical("object", f"{type(store).__name__}@{id(store):x}")


def canonical_of_location(location: Location) -> Canonical:
    """The canonical name of a :class:`~zarr_dask_utils._core.storage.locations.Location`.

    Includes the node path inside the store, so an array of a group lies inside the group.
    """
    if location.kind == "object" and location.store is not None:
        base = canonical_of_store(location.store)
    else:
        base = canonical_of_url(location.url)
    return base.child(location.path)


def overlap(a: Canonical, b: Canonical) -> Overlap | None:
    """How *b* relates to *a*: ``"same"``, ``"inside"`` (b below a), ``"contains"`` or ``None``.

    Pure: compares names only.

    Examples
    --------
    >>> overlap(Canonical("s3", "b/x.zarr"), Canonical("s3", "b/x.zarr/sub"))
    'inside'
    >>> overlap(Canonical("s3", "b/x.zarr"), Canonical("s3", "b/x.zarr2")) is None
    True
    """
    if a.scheme != b.scheme:
        return None
    pa = [p for p in a.path.split("/") if p]
    pb = [p for p in b.path.split("/") if p]
    if pa == pb:
        return "same"
    if len(pb) > len(pa) and pb[: len(pa)] == pa:
        return "inside"
    if len(pa) > len(pb) and pa[: len(pb)] == pb:
        return "contains"
    return None


_RELATION = {
    "same": "is the same location as",
    "inside": "lies inside",
    "contains": "contains",
}


def refuse_overlap(
    source: Location | Canonical,
    target: Location | Canonical,
    *,
    what: str = "target",
    source_name: str = "source",
) -> None:
    """Raise unless *target* and *source* are disjoint places in storage.

    Call it before anything is written: a target equal to, inside or around its source
    would be deleted, overwritten or grow members in the source.

    Parameters
    ----------
    source, target
        Locations (or canonical names) to compare, symlinks followed.
    what, source_name
        How to call them in the message (``"temp store"``, ``"manifest output"``, …).

    Raises
    ------
    OverlappingLocationsError
        When they overlap (an :class:`InvalidOptionError`, so the CLI exits with 2).
    """
    a = source if isinstance(source, Canonical) else canonical_of_location(source)
    b = target if isinstance(target, Canonical) else canonical_of_location(target)
    relation = overlap(a, b)
    if relation is None:
        return
    shown_a = getattr(source, "display", a.url)
    shown_b = getattr(target, "display", b.url)
    resolved = "" if (a.url, b.url) == (shown_a, shown_b) else f" (resolved: {a.url} and {b.url})"
    raise OverlappingLocationsError(
        f"The {what} {shown_b} {_RELATION[relation]} the {source_name} {shown_a}{resolved}, so "
        f"writing it would modify or delete the {source_name}. Nothing was written. Choose a "
        f"{what} outside the {source_name}, e.g. a sibling folder or prefix."
    )
