"""Locations: turn whatever the user has into a zarr-python 3 store, on any process.

A :class:`Location` is a small, picklable description of a store (URL + ``storage_options``,
or the store object itself) that a Dask worker process can reopen.  :func:`resolve_location`
builds one from a local path, ``file://``, ``s3://``, ``memory://``, a ``.zip`` file, a zarr
``Store``, ``Group`` or ``Array``, or an fsspec mapper; :func:`open_store` and
:func:`open_node` are the public entry points built on it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import zarr
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore, MemoryStore, WrapperStore, ZipStore

from zarr_dask_utils._core.errors import (
    InvalidOptionError,
    ReadOnlyStoreError,
    StoreUnreadableError,
)
from zarr_dask_utils._core.storage.trace import maybe_wrap
from zarr_dask_utils._core.storage.zipfiles import (
    ensure_zip_open,
    file_version,
    inside_zip,
    open_zip,
    refuse_writable_wrapped_zip,
)

if TYPE_CHECKING:
    from fsspec.mapping import FSMap

    from zarr_dask_utils._core.storage.canonical import Canonical

__all__ = [
    "Location",
    "StoreLike",
    "open_store",
    "redact",
    "resolve_location",
    "url_credentials",
]

StoreLike: TypeAlias = "str | os.PathLike[str] | Store | zarr.Group | zarr.Array[Any] | FSMap"

_URL = re.compile(r"^(?P<proto>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")
# Object stores have no ports and no user names: any ``…@`` before the bucket is a credential.
_OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss")
_CREDENTIALS_IN_URL = re.compile(
    r"(?P<proto>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>"
    r"[^\s/@]+"  # user[:password], no slash
    # a password with slashes (AWS secrets have them), unless it reads as host:port/path
    r"|[^\s/:@]+:(?!\d*(?:[/?#\s]|$))[^\s@]*"
    # object stores: no port, so user:anything@ is a credential even when digits come first
    r"|(?:" + "|".join(f"(?<={p}://)" for p in _OBJECT_STORES) + r")[^\s/:@]+:[^\s@]*"
    r")@",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """Remove ``user:password@`` from a URL (or from URLs inside a text) to show or log it.

    Examples
    --------
    >>> redact("s3://KEY:SECRET@bucket/x.zarr")
    's3://***@bucket/x.zarr'
    """
    return _CREDENTIALS_IN_URL.sub(r"\g<proto>***@", url)


def url_credentials(url: str) -> str | None:
    """The ``user[:password]`` part of *url* (``None`` when it has none).

    Examples
    --------
    >>> url_credentials("s3://KEY:SE/CRET@bucket/x.zarr")
    'KEY:SE/CRET'
    >>> url_credentials("http://host:8080/a@b") is None
    True
    """
    match = _CREDENTIALS_IN_URL.match(url)
    return match.group("userinfo") if match else None


def _reject_credentials(url: str) -> None:
    """Refuse a URL carrying a password (or, for object stores, anything before ``@``)."""
    info = url_credentials(url)
    if info is None:
        return
    proto = url.partition("://")[0].lower()
    if ":" not in info and proto not in _OBJECT_STORES:
        return  # a user name alone (sftp://user@host) is an address, not a secret
    raise InvalidOptionError(
        f"The URL {redact(url)!r} carries credentials (user:password@ before the host or "
        "bucket). zarr-dask-utils does not take them there: a URL is shown in messages, logs "
        "and reports and sent to every Dask worker. Remove them from the URL and pass them as "
        "storage_options={'key': ..., 'secret': ...} (zdu: -o key=... -o secret=...), or set "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a profile) in the environment."
    )


@dataclass(frozen=True)
class Location:
    """A store that any process of the cluster can reopen.

    Parameters
    ----------
    url
        Canonical address: absolute local path, ``s3://bucket/prefix``, ``memory://…``,
        ``/path/data.zip`` or ``<TypeName>`` for a store object given directly.
    kind
        ``"local"``, ``"zip"``, ``"fsspec"`` or ``"object"``.
    storage_options
        fsspec options (credentials, endpoint); never shown in reports.
    path
        Node path inside the store (``""`` is the store root).
    read_only
        Open the store read-only.
    store
        The store object itself, for ``kind == "object"``.
    """

    url: str
    kind: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    path: str = ""
    read_only: bool = True
    store: Store | None = field(default=None, repr=False, compare=False)

    @property
    def display(self) -> str:
        """The URL (and node path) with credentials removed, for reports and messages."""
        url = redact(self.url)
        return f"{url}#{self.path}" if self.path else url

    @property
    def canonical(self) -> Canonical:
        """One name for this place in storage, however it was spelled (see ``canonical.py``)."""
        from zarr_dask_utils._core.storage.canonical import canonical_of_location

        return canonical_of_location(self)

    @property
    def is_remote(self) -> bool:
        """``True`` for object stores reached over a network (S3, GCS, HTTP, …)."""
        if self.kind == "fsspec":
            proto = _URL.match(self.url)
            return bool(proto) and proto.group("proto") not in ("memory", "file")  # type: ignore[union-attr]
        inner = _unwrap(self.store)
        if self.kind == "object" and isinstance(inner, FsspecStore):
            protocol = inner.fs.protocol
            protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
            return not set(protocols) & {"memory", "file", "local"}
        return False

    @property
    def shareable(self) -> bool:
        """Whether worker processes see the same data (``False`` for in-memory stores)."""
        if self.kind == "fsspec":
            return not self.url.startswith("memory://")
        if self.kind == "object":
            inner = _unwrap(self.store)  # a LoggingStore around a MemoryStore is in memory too
            if isinstance(inner, MemoryStore):
                return False
            if isinstance(inner, FsspecStore):
                protocol = inner.fs.protocol
                protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
                return "memory" not in protocols
            return True
        return True

    def with_read_only(self, read_only: bool) -> Location:
        """Return a copy opened with another ``read_only`` flag."""
        return Location(self.url, self.kind, self.storage_options, self.path, read_only, self.store)

    def open_store(self) -> Store:
        """Open (or reuse, per process) the zarr store for this location."""
        if self.kind == "object":
            assert self.store is not None
            if self.store.read_only and not self.read_only:
                raise ReadOnlyStoreError(
                    f"The store given for {self.display} was opened read-only, but this operation "
                    "writes to it. Pass a writable store, or the path/URL so zarr-dask-utils can "
                    "open it writable."
                )
            ensure_zip_open(_unwrap(self.store))
            return maybe_wrap(self.store)
        if self.kind == "zip" and not self.read_only:
            raise ReadOnlyStoreError(
                f"{self.display} is a zip file: zarr-dask-utils reads zip stores but does not "
                "write into them (a zip member cannot be replaced in place, and Dask worker "
                "processes cannot share one zip writer). Extract it (unzip) to a folder, run the "
                "command on the folder (or write the output to a folder), and zip it again."
            )
        key: tuple[Any, ...] = (self.url, self.kind, _freeze(self.storage_options), self.read_only)
        if self.kind == "zip":
            key += (file_version(self.url),)  # a zip rewritten since: reopen its index
        with _CACHE_LOCK:
            store = _STORE_CACHE.get(key)
            if store is None:
                store = _make_store(self)
                _STORE_CACHE[key] = store
        return maybe_wrap(store)


def _unwrap(store: Store | None) -> Store | None:
    """The innermost store of zarr ``WrapperStore`` layers (``LoggingStore``, …)."""
    while isinstance(store, WrapperStore):
        store = store._store
    return store


_STORE_CACHE: dict[tuple[Any, ...], Store] = {}
_CACHE_LOCK = threading.Lock()


def _forget_inherited_stores() -> None:
    """In a forked child: drop the parent's stores (their sessions and event loop are the parent's).

    An s3fs/aiohttp session used across ``fork`` hangs or fails (fsspec #755); DataLoader and
    multiprocessing workers fork.  The lock may have been held by a parent thread at fork time.
    """
    global _CACHE_LOCK
    _CACHE_LOCK = threading.Lock()
    _STORE_CACHE.clear()


os.register_at_fork(after_in_child=_forget_inherited_stores)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def _make_store(loc: Location) -> Store:
    if loc.kind == "local":
        return LocalStore(loc.url, read_only=loc.read_only)
    if loc.kind == "zip":
        return open_zip(loc.url, loc.display)
    from zarr_dask_utils._core.storage.obstore_engine import open_obstore, split_engine

    engine, options = split_engine(loc.storage_options)
    if engine == "obstore":
        return open_obstore(loc.url, options, read_only=loc.read_only)
    if loc.url.startswith("s3://"):
        _require_s3fs()
    return FsspecStore.from_url(loc.url, storage_options=options, read_only=loc.read_only)


def _require_s3fs() -> None:
    try:
        import s3fs  # noqa: F401
    except ImportError as err:  # pragma: no cover - s3fs is in the [s3] extra
        raise InvalidOptionError(
            "Reading s3:// URLs needs s3fs, which is not installed. Install the extra: "
            "pip install 'zarr-dask-utils[s3]'."
        ) from err


def resolve_location(
    store: StoreLike | Location,
    *,
    storage_options: Mapping[str, Any] | None = None,
    read_only: bool = True,
) -> Location:
    """Describe *store* as a :class:`Location` without touching it.

    Parameters
    ----------
    store
        A local path, ``file://`` / ``s3://`` / ``memory://`` / other fsspec URL, a ``.zip``
        file, a zarr ``Store``, ``Group`` or ``Array``, or an fsspec mapper.
    storage_options
        fsspec options for URLs; rejected for local paths and objects, where they would be
        silently ignored.
    read_only
        Whether the store is opened read-only.

    Returns
    -------
    Location

    Raises
    ------
    InvalidOptionError
        For an unsupported type or for ``storage_options`` that would be ignored.
    """
    if isinstance(store, Location):
        return store if store.read_only == read_only else store.with_read_only(read_only)
    options = dict(storage_options or {})

    def _no_options(what: str) -> None:
        if options:
            raise InvalidOptionError(
                f"storage_options were given for {what}, where they would be ignored. "
                "Remove them, or pass a URL (e.g. s3://bucket/path) that they apply to."
            )

    if isinstance(store, zarr.Array | zarr.Group):
        _no_options(f"the zarr {type(store).__name__} {store.store_path}")
        inner = store.store_path.store
        return _location_of_store(inner, path=store.path, read_only=read_only)
    if isinstance(store, Store):
        _no_options(f"the store object {store!r}")
        return _location_of_store(store, path="", read_only=read_only)
    if type(store).__name__ == "FSMap":
        _no_options("an fsspec mapper (its filesystem carries its own options)")
        mapped = FsspecStore.from_mapper(store, read_only=read_only)
        return _location_of_store(mapped, path="", read_only=read_only)
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if not isinstance(store, str):
        raise InvalidOptionError(
            f"Cannot open a store from a {type(store).__name__}. Pass a path, a URL such as "
            "s3://bucket/data.zarr, a zarr Store, Group or Array, or an fsspec mapper."
        )
    match = _URL.match(store)
    if match:
        _reject_credentials(store)
    if match and match.group("proto") in ("file", "local"):
        _no_options(f"the local URL {store!r}")
        store = match.group("rest")
        match = None
    if match is None:
        _no_options(f"the local path {store!r}")
        path = resolved_path(store)
        if path.lower().endswith(".zip"):
            return Location(path, "zip", {}, "", read_only)
        inside = inside_zip(path)
        if inside is not None:
            return Location(inside[0], "zip", {}, inside[1], read_only)
        return Location(path, "local", {}, "", read_only)
    url = store.rstrip("/") if not store.endswith("://") else store
    return Location(url, "fsspec", options, "", read_only)


def resolved_path(path: str | os.PathLike[str]) -> str:
    """The absolute local path with ``~`` expanded and symbolic links followed.

    Raises
    ------
    StoreUnreadableError
        The path is a symbolic link loop (a link leading back to itself, directly or through
        other links): nothing can ever be read there.
    """
    try:
        return str(Path(path).expanduser().resolve())
    except (RuntimeError, OSError) as err:  # Python < 3.13: RuntimeError; 3.13+: OSError ELOOP
        raise StoreUnreadableError(
            f"The local path {os.fspath(path)!r} is (or lies under) a symbolic link loop: "
            f"following its links leads back to where they started ({err}), so nothing can be "
            "stored or read there. Point the link at the real store folder, or pass that "
            "folder's path."
        ) from err


def _location_of_store(store: Store, *, path: str, read_only: bool) -> Location:
    if isinstance(store, LocalStore):
        return Location(resolved_path(store.root), "local", {}, path, read_only)
    if isinstance(store, ZipStore):
        return Location(resolved_path(store.path), "zip", {}, path, read_only)
    name = type(store).__name__
    refuse_writable_wrapped_zip(store, f"<{name}>")  # workers would reopen it for writing
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        proto = protocol if isinstance(protocol, str) else protocol[0]
        name = f"{proto}://{store.path}"
    return Location(name, "object", {}, path, read_only, store)


def open_store(
    store: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    read_only: bool = True,
) -> Store:
    """Open *store* as a zarr-python 3 ``Store`` (read-only unless asked).

    Parameters
    ----------
    store
        Anything :func:`resolve_location` accepts.
    storage_options
        fsspec options for URLs (credentials, ``endpoint_url``, …).
    read_only
        Open read-only (the default) or writable.

    Returns
    -------
    zarr.abc.store.Store

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import open_store
    >>> s = open_store(zarr.storage.MemoryStore())
    >>> type(s).__name__
    'MemoryStore'
    """
    return resolve_location(
        store, storage_options=storage_options, read_only=read_only
    ).open_store()
