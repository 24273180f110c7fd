"""Check that the workers of a user's cluster see an operation's local paths.

A local path means something only on the host that reads it.  When the workers of a user's
cluster run on other hosts (or in other mount namespaces), a store at ``/data/era5.zarr`` on
the client's machine is missing there, or is another store at the same path, and the
operation used to fail deep inside a task.  The operation door calls
:func:`check_workers_see` once per operation, before anything is written, with the local
locations the graphs will read or write; it sends **one** request to the cluster
(``client.run`` of :func:`_worker_view`) and raises :class:`StoreNotVisibleError` with one
paragraph naming the workers and what they saw.

What is compared:

* a store that is read: a fingerprint of its folder (or ``.zip`` file) and of its root metadata
  documents: inode, size, modification time and a hash of each document's first bytes.  A
  copy at the same path on another host differs (another inode), so it counts as not
  visible: writes or later changes would not reach it.  The device number is left out on
  purpose: every NFS client numbers the same mount differently.
* a store that is written (a rechunk target or temp store, a store repaired in place): the
  client writes a probe file with a random token into the folder (or the nearest folder that
  exists), each worker must read that token back and create and delete a file of its own
  there.  The client's probe is removed again; nothing else is written.

No request is sent for object stores (``s3://``…), for an embedded cluster or for threads in
this process: those workers share this host's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zarr.storage import FsspecStore, LocalStore

from zarr_dask_utils._core.errors import StoreNotVisibleError
from zarr_dask_utils._core.storage.locations import Location, _unwrap
from zarr_dask_utils._core.storage.outputs import PROBE_PREFIX  # listings and checks skip it

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["PathCheck", "check_workers_see", "local_path", "requests_sent"]

logger = logging.getLogger(__name__)

#: Root documents whose identity makes up a store's fingerprint.
_ROOT_DOCUMENTS = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
_HASHED_BYTES = 65536

_SENT = [0]  # requests sent by this process (tests assert the cost)


def requests_sent() -> int:
    """How many visibility requests this process has sent to clusters so far."""
    return _SENT[0]


def local_path(location: Location) -> str | None:
    """The local file or folder behind *location*, or ``None`` when it is not a local path."""
    if location.kind == "local" and location.path:
        return os.path.join(location.url, location.path)
    if location.kind in ("local", "zip"):
        return location.url
    if location.kind == "object":
        inner = _unwrap(location.store)
        if isinstance(inner, LocalStore):
            return str(inner.root)
        if isinstance(inner, FsspecStore):
            protocol = inner.fs.protocol
            protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
            if set(protocols) & {"file", "local"}:
                return str(inner.path)
    return None


@dataclass(frozen=True)
class PathCheck:
    """One local path to check on the workers.

    Parameters
    ----------
    path
        The store's folder or ``.zip`` file as the client sees it.
    output
        Whether the operation writes there (the workers must be able to create files).
    """

    path: str
    output: bool = False


# --- what a process sees -----------------------------------------------------------------


def _fingerprint(path: str) -> tuple[Any, ...]:
    """Identity of the file or folder at *path* and of its root documents (no device number)."""
    st = os.stat(path)
    parts: list[Any] = [("dir" if os.path.isdir(path) else "file", st.st_ino)]
    files = [(name, os.path.join(path, name)) for name in _ROOT_DOCUMENTS]
    if not os.path.isdir(path):
        files = [("", path)]
    for name, full in files:
        try:
            doc = os.stat(full)
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read(_HASHED_BYTES)).hexdigest()[:16]
        except FileNotFoundError:
            continue
        except OSError as err:  # unreadable here: the operation's own checks say so
            parts.append((name, type(err).__name__))
            continue
        parts.append((name, doc.st_ino, doc.st_size, doc.st_mtime_ns, digest))
    return tuple(parts)


def _existing_folder(path: str) -> str:
    """*path* if it is a folder, else its nearest ancestor that exists."""
    current = Path(path)
    while not current.is_dir() and current != current.parent:
        current = current.parent
    return str(current)


def _describe(err: OSError) -> str:
    return err.strerror.lower() if err.strerror else f"{type(err).__name__}: {err}"


def _worker_view(
    checks: Sequence[tuple[str, tuple[Any, ...] | None, str | None, str | None]],
) -> list[str | None]:
    """Run on every worker: for each check, ``None`` when it sees the same place, else why not.

    Each check is ``(path, fingerprint, probe_path, token)``: a fingerprint to compare for a
    store that is read, or the client's probe file and its token for a folder that is written.
    """
    seen: list[str | None] = []
    for path, fingerprint, probe, token in checks:
        try:
            if probe is None:
                mine = _fingerprint(path)
                seen.append(None if mine == fingerprint else "sees a different file there")
                continue
            folder = os.path.dirname(probe)
            if not os.path.isdir(folder):
                seen.append(f"no folder {folder!r}")
                continue
            try:
                found = Path(probe).read_text()
            except FileNotFoundError:
                seen.append(f"the folder {folder!r} there is another one than this machine's")
                continue
            if found != token:
                seen.append("sees a different file there")
                continue
            own = f"{probe}-worker-{uuid.uuid4().hex[:8]}"
            with open(own, "x"):
                pass
            os.unlink(own)
            seen.append(None)
        except FileNotFoundError:
            seen.append("no such file or directory")
        except OSError as err:
            seen.append(_describe(err) if probe is None else f"cannot write there ({err})")
    return seen


@contextlib.contextmanager
def _probes(checks: Sequence[PathCheck]) -> Iterator[list[tuple[Any, ...] | None]]:
    """The client's side of every check: fingerprints, and probe files removed on exit."""
    written: list[str] = []
    items: list[tuple[Any, ...] | None] = []
    try:
        for check in checks:
            if check.output:
                folder = _existing_folder(check.path)
                token = uuid.uuid4().hex
                probe = os.path.join(folder, f"{PROBE_PREFIX}{token[:12]}")
                try:
                    Path(probe).write_text(token)
                except OSError:  # the client cannot write: the write probe says so later
                    items.append((folder, _fingerprint(folder), None, None))
                    continue
                written.append(probe)
                items.append((check.path, None, probe, token))
            else:
                try:
                    items.append((check.path, _fingerprint(check.path), None, None))
                except OSError:  # missing here too: the location's own checks report it
                    items.append(None)
        yield items
    finally:
        for probe in written:
            with contextlib.suppress(OSError):
                os.unlink(probe)


def check_workers_see(client: Client, checks: Sequence[PathCheck]) -> None:
    """Raise unless every worker of *client* sees each local path as this process does.

    Parameters
    ----------
    client
        The user's client (not an embedded cluster: its workers share this host).
    checks
        The local paths of the operation; one request is sent for all of them.

    Raises
    ------
    StoreNotVisibleError
        A worker does not see a path, sees another file there, or cannot write an output.
    """
    if not checks:
        return
    with _probes(checks) as items:
        asked = [i for i in items if i is not None]
        if not asked:
            return
        _SENT[0] += 1
        answers = client.run(_worker_view, asked, on_error="return")
    problems: dict[int, list[tuple[str, str]]] = {}
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):  # no verdict from it: the graph will tell
            logger.warning("Worker %s could not check local paths: %r", worker, answer)
            continue
        for index, why in enumerate(answer):
            if why is not None:
                problems.setdefault(index, []).append((worker, why))
    if not problems:
        return
    known = [c for c, i in zip(checks, items, strict=True) if i is not None]
    index, failed = min(problems.items())
    raise StoreNotVisibleError(_message(client, known[index], failed, len(answers)))


def _scheduler_address(client: Client) -> str:
    """The address of *client*'s scheduler (``"?"`` when it has none)."""
    rpc = client.scheduler
    return str(rpc.address) if rpc is not None else "?"


def _message(client: Client, check: PathCheck, failed: list[tuple[str, str]], total: int) -> str:
    address = _scheduler_address(client)
    worker, why = failed[0]
    more = f"; {len(failed)} of {total} workers" if len(failed) > 1 else ""
    if check.output:
        return (
            f"The workers of the cluster at {address} cannot write to {check.path!r} "
            f"(worker {worker}: {why}{more}). Their tasks write the output there by its path, "
            "so it must be a folder they all reach and may write. Write it to a filesystem "
            "every worker mounts at the same path, or pass an s3:// URL (with its storage "
            "options) as the output."
        )
    return (
        f"The workers of the cluster at {address} cannot see {check.path!r} (worker {worker}: "
        f"{why}{more}). Their tasks read the store by its path, so it must be the same store "
        "on every worker host. Use a filesystem every worker mounts at the same path, or copy "
        f"the store to S3 from this machine (`zdu download {check.path} s3://BUCKET/PREFIX "
        "--dst-storage-option ...`, without --scheduler so the copy runs here) and pass the "
        "s3:// URL."
    )
