"""Raw key I/O on zarr stores: list, read many keys concurrently, write, copy, delete.

Everything goes through the zarr ``Store`` API (so local, zip, memory and fsspec stores behave
alike) and through zarr's own event loop (``zarr.core.sync.sync``).  Storage exceptions are
translated into zarr-dask-utils errors that name the location and say what to do.
"""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from zarr.abc.store import OffsetByteRequest, Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from zarr_dask_utils._core.errors import (
    EndpointUnreachableError,
    ReadOnlyStoreError,
    StoreAccessDeniedError,
    StoreNotFoundError,
    ZarrDaskUtilsError,
    exception_chain,
)

__all__ = [
    "concurrent_map",
    "delete_keys",
    "is_local_permission_error",
    "list_keys",
    "read_keys",
    "storage_errors",
    "translate_storage_error",
    "write_keys",
]

_DENIED_WORDS = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "403")
#: the words as a pattern; "403" only as a status code, never inside a number such as a port
_DENIED = re.compile(
    "|".join(r"(?<![\w.:])403(?!\w)" if w == "403" else re.escape(w) for w in _DENIED_WORDS)
)
_UNREACHABLE_TYPES = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ConnectionClosedError",
)
#: obstore (``zdu_engine="obstore"``) reports a refused or dead endpoint only in its text
_OBSTORE_UNREACHABLE = "HTTP error: error sending request"


def translate_storage_error(exc: BaseException, where: str) -> ZarrDaskUtilsError | None:
    """Map a storage-layer exception to a clear zarr-dask-utils error, or ``None``.

    Parameters
    ----------
    exc
        The exception raised by zarr, fsspec, s3fs, botocore or aiohttp.
    where
        The redacted location, used in the message.
    """
    for err in exception_chain(exc):
        if isinstance(err, ZarrDaskUtilsError):
            return err
        name = type(err).__name__
        text = str(err)
        if name == "NoCredentialsError":
            return StoreAccessDeniedError(
                f"No credentials were found for {where}. Pass them with storage_options "
                "(key/secret, or profile) or --storage-option key=... --storage-option secret=..., "
                "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use anon=True for public data."
            )
        # before the denied words: an endpoint URL's port may read 403 (127.0.0.1:40359)
        if (
            name in _UNREACHABLE_TYPES
            or _OBSTORE_UNREACHABLE in text
            or (
                isinstance(err, OSError)
                and not isinstance(err, FileNotFoundError)
                and err.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ETIMEDOUT)
            )
        ):
            return EndpointUnreachableError(
                f"Could not reach the storage endpoint for {where} ({name}: {text}). Check "
                "endpoint_url in storage_options, the network, and that the service is running."
            )
        if isinstance(err, PermissionError) or _DENIED.search(text):
            if "read-only" in text or "read only" in text:
                return ReadOnlyStoreError(
                    f"{where} is read-only, but this operation writes to it ({text}). Open it "
                    "writable, or write to a copy."
                )
            if is_local_permission_error(err):
                return StoreAccessDeniedError(
                    f"Permission denied at {where} ({name}: {text}). The operating system "
                    "refused this user access to a local file or folder: check its owner and "
                    "permissions (ls -l), and that this user and every Dask worker's user may "
                    "read it (and write it, for an operation that writes)."
                )
            return StoreAccessDeniedError(
                f"Access to {where} was denied ({name}: {text}). Check the credentials "
                "(key/secret or profile in storage_options, AWS_* environment variables) and "
                "that they allow listing and reading this bucket and prefix."
            )
        if name == "NoSuchBucket" or "NoSuchBucket" in text or "bucket does not exist" in text:
            return StoreNotFoundError(
                f"The bucket of {where} does not exist ({text}). Check the bucket name and the "
                "endpoint_url/region in storage_options."
            )
    return None


def is_local_permission_error(err: BaseException) -> bool:
    """An operating-system permission error on a local file (errno and file name set).

    Object stores raise ``PermissionError`` from an HTTP status (s3fs: no errno, no file name),
    and their fix is credentials; a local file's fix is its permissions.
    """
    return (
        isinstance(err, PermissionError)
        and err.errno in (errno.EACCES, errno.EPERM)
        and err.filename is not None
    )


@contextmanager
def storage_errors(where: str) -> Iterator[None]:
    """Translate storage exceptions raised in the block (see :func:`translate_storage_error`)."""
    try:
        yield
    except ZarrDaskUtilsError:
        raise
    except Exception as exc:
        translated = translate_storage_error(exc, where)
        if translated is None:
            raise
        raise translated from exc


async def concurrent_map(
    items: Sequence[tuple[Any, ...]], func: Callable[..., Awaitable[Any]], *, limit: int
) -> list[Any]:
    """``func(*item)`` for every item, at most *limit* at once, results in order.

    Unlike ``zarr.core.common.concurrent_map``, the first failure cancels the requests still
    running (and waits for them), so none keeps reading, writing or retrying in the
    background after the error has been reported.
    """
    sem = asyncio.Semaphore(limit)

    async def run(item: tuple[Any, ...]) -> Any:
        async with sem:
            return await func(*item)

    tasks = [asyncio.ensure_future(run(item)) for item in items]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def list_keys(store: Store, prefix: str = "") -> list[str]:
    """List every key under *prefix* (sorted), reading fresh (no cached listings)."""
    if isinstance(store, FsspecStore):
        store.fs.invalidate_cache()

    async def _collect() -> list[str]:
        if prefix:
            return [k async for k in store.list_prefix(prefix.rstrip("/") + "/")]
        return [k async for k in store.list()]

    return sorted(sync(_collect()))


def list_dir(store: Store, prefix: str = "") -> list[str]:
    """List the immediate children (keys and "directories") of *prefix*."""
    if isinstance(store, FsspecStore):
        store.fs.invalidate_cache()

    async def _collect() -> list[str]:
        return [k async for k in store.list_dir(prefix)]

    return sorted(sync(_collect()))


def read_keys(
    store: Store, keys: Iterable[str], *, concurrency: int = 64
) -> dict[str, bytes | None]:
    """Read many keys concurrently; a missing key maps to ``None``.

    Parameters
    ----------
    store
        Any zarr store.
    keys
        Keys to read.
    concurrency
        Requests in flight at once.
    """
    keys = list(dict.fromkeys(keys))
    prototype = default_buffer_prototype()
    # s3fs sends a HEAD before every whole-object GET (to split big objects into concurrent
    # ranges) unless the size is in its listing cache; a ``bytes=0-`` range returns the same
    # bytes in one request (empty objects: b"", missing: None), halving requests on S3.
    whole = OffsetByteRequest(0) if isinstance(store, FsspecStore) else None

    async def _one(key: str) -> bytes | None:
        buf = await store.get(key, prototype=prototype, byte_range=whole)
        return None if buf is None else buf.to_bytes()

    values: Sequence[Any] = sync(concurrent_map([(k,) for k in keys], _one, limit=concurrency))
    return dict(zip(keys, values, strict=True))


def write_keys(store: Store, items: dict[str, bytes], *, concurrency: int = 64) -> None:
    """Write several keys; each single-object write is atomic in zarr's stores."""
    prototype = default_buffer_prototype()

    async def _one(key: str, value: bytes) -> None:
        await store.set(key, prototype.buffer.from_bytes(value))

    sync(concurrent_map(list(items.items()), _one, limit=concurrency))


def delete_keys(store: Store, keys: Iterable[str], *, concurrency: int = 64) -> None:
    """Delete keys (missing keys are ignored)."""
    sync(concurrent_map([(k,) for k in keys], store.delete, limit=concurrency))
