"""Check that an output location can be written, before an operation does any work.

An operation with an output (a rechunk target or temp store, a manifest file, an HTML report)
would otherwise read and hash a whole store and only then find that the bucket does not
exist, the folder is read-only or the credentials are wrong.  :func:`probe_store_writable`
and :func:`probe_file_writable` write one empty marker object and delete it again (local
folders the probe had to create are removed too), and raise :class:`OutputNotWritableError`
with one paragraph saying where, why, and what to do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from zarr_dask_utils._core.errors import (
    OutputNotWritableError,
    StoreAccessDeniedError,
    StoreNotFoundError,
    ZarrDaskUtilsError,
)
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location, redact
from zarr_dask_utils._core.storage.storeio import (
    delete_keys,
    is_local_permission_error,
    translate_storage_error,
    write_keys,
)

__all__ = ["PROBE_PREFIX", "probe_file_writable", "probe_store_writable"]

PROBE_PREFIX = ".zdu-probe-"

_FIX_BY_KIND = {
    StoreNotFoundError.kind: "Create the bucket (or folder) first, or fix the name",
    StoreAccessDeniedError.kind: "Check the credentials and that they allow writing there",
    "local-permission": "Check the folder's permissions (or choose a folder you may write to)",
}
_DEFAULT_FIX = (
    "Check that the folder or bucket exists and that you may write to it (for a URL, pass its "
    "credentials and endpoint as storage options)"
)


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _fail(what: str, where: str, err: BaseException) -> OutputNotWritableError:
    translated = translate_storage_error(err, where)
    kind = translated.kind if translated is not None else ""
    if isinstance(err, FileNotFoundError) and not kind:
        kind = StoreNotFoundError.kind
    if is_local_permission_error(err):
        kind = "local-permission"
    elif isinstance(err, PermissionError) and not kind:
        kind = StoreAccessDeniedError.kind
    reason = redact(f"{type(err).__name__}: {err}".strip())
    return OutputNotWritableError(
        f"Cannot write the {what} {where} ({reason}). This was found by an empty test write "
        f"before any work, so nothing was read or changed. {_FIX_BY_KIND.get(kind, _DEFAULT_FIX)}"
        ", then rerun."
    )


@contextlib.contextmanager
def _removing_new_dirs(path: Path) -> Iterator[None]:
    """Remove the (empty) local folders above *path* that did not exist before the block."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        yield
    finally:
        for folder in missing:  # deepest first; stops at the first folder that is not empty
            try:
                folder.rmdir()
            except OSError:
                break


def probe_store_writable(location: Location, *, what: str = "target") -> None:
    """Write and delete one empty key at *location*; raise if the store refuses.

    Parameters
    ----------
    location
        A writable location (``read_only=False``).
    what
        How to call it in the message (``"target"``, ``"temp store"``).

    Raises
    ------
    OutputNotWritableError
        The store could not be written (missing bucket or folder, permissions, credentials).
    ReadOnlyStoreError
        A store object opened read-only was given.
    """
    if location.kind == "zip":  # a zip archive cannot delete a member: probe its folder
        probe_file_writable(location.url, None, what=what)
        return
    key = join_key(location.path, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    guard = (
        _removing_new_dirs(Path(location.url) / location.path)
        if location.kind == "local"
        else contextlib.nullcontext()
    )
    with guard:
        try:
            store = location.open_store()
            write_keys(store, {key: b""})
            delete_keys(store, [key])
        except ZarrDaskUtilsError:
            raise
        except Exception as err:
            raise _fail(what, location.display, err) from err


def probe_file_writable(
    output: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    what: str = "output",
) -> None:
    """Write and delete an empty object beside the file *output* (a local path or a URL).

    Parameters
    ----------
    output
        Where the file will be written.
    storage_options
        fsspec options of a URL.
    what
        How to call it in the message (``"manifest output"``, ``"HTML report"``).

    Raises
    ------
    OutputNotWritableError
        The folder or bucket is missing or refuses writes, or *output* is a folder.
    """
    text = os.fspath(output)
    shown = redact(text)
    if _is_url(text):
        try:
            from fsspec.core import url_to_fs

            fs, path = url_to_fs(text, **dict(storage_options or {}))
            probe = f"{path.rstrip('/').rpartition('/')[0]}/{PROBE_PREFIX}{uuid.uuid4().hex}"
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except ZarrDaskUtilsError:
            raise
        except Exception as err:
            raise _fail(what, shown, err) from err
        return
    path = Path(text.removeprefix("file://")).expanduser()
    if path.is_dir():
        raise OutputNotWritableError(
            f"Cannot write the {what} {shown}: it is a folder. Pass a file name, e.g. "
            f"{shown.rstrip('/')}/out.json, or another path."
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=PROBE_PREFIX)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise _fail(what, shown, err) from err
