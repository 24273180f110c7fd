"""Pure planning of a store copy: which objects to move, in which tasks, and what a rerun skips.

No I/O, no Dask, no clock: listings (``{key: (size, version)}``) and the records of a previous
run in; frozen dataclasses out.  Data objects are cut into tasks by count and bytes; the
metadata documents (``zarr.json``, ``.zarray``, ``.zgroup``, ``.zattrs``, ``.zmetadata``) go
into one final task, deepest first and the root's last, so a reader never sees a target that
looks complete before every chunk is there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from zarr_dask_utils._core.pure.chunkgrid import is_partial_key

__all__ = [
    "DOCUMENT_NAMES",
    "MARKER_PREFIX",
    "ObjectInfo",
    "ResumeDecision",
    "TransferPlan",
    "decide_resume",
    "is_document",
    "plan_transfer",
    "select_keys",
]

#: Names of the Zarr metadata documents (formats 2 and 3): written last.
DOCUMENT_NAMES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})
#: Where a download keeps its marker and per-object records inside the target.
MARKER_PREFIX = ".zdu-download"

#: ``(size, version)`` of one listed object; version is the ETag (object stores), the
#: modification time (local files) or ``None`` when the store has neither.
ObjectInfo = tuple[int, str | None]


def is_document(key: str) -> bool:
    """``True`` for a Zarr metadata document key.

    Examples
    --------
    >>> is_document("t2m/zarr.json"), is_document("t2m/c/0/0")
    (True, False)
    """
    return key.rpartition("/")[2] in DOCUMENT_NAMES


def _ours(key: str) -> bool:
    return key.startswith(f"{MARKER_PREFIX}/") or is_partial_key(key)


def select_keys(keys: Iterable[str], arrays: Sequence[str] | None) -> list[str]:
    """The keys to copy: all (minus our markers and partial temp files), or *arrays*' subtrees.

    A subset keeps the documents of every parent group, so the target opens as the same
    hierarchy holding fewer nodes.  Consolidated metadata (``.zmetadata``) is left out of a
    subset: it would describe nodes the target does not have.

    Parameters
    ----------
    keys
        Every key of the source (relative to its node path).
    arrays
        Node paths (arrays or groups) to copy; ``None`` copies everything.

    Returns
    -------
    list of str
        Sorted keys.

    Raises
    ------
    KeyError
        A node path of *arrays* matches no key (its text names the path).

    Examples
    --------
    >>> select_keys(["zarr.json", "a/zarr.json", "a/c/0", "b/zarr.json"], ["a"])
    ['a/c/0', 'a/zarr.json', 'zarr.json']
    """
    every = [k for k in keys if not _ours(k)]
    if arrays is None:
        return sorted(every)
    chosen: set[str] = set()
    parents: set[str] = set()
    for node in (a.strip("/") for a in arrays):
        below = [k for k in every if not node or k.startswith(f"{node}/") or k == node]
        if not below:
            raise KeyError(node)
        chosen.update(below)
        parts = node.split("/") if node else []
        parents.update("/".join(parts[:i]) for i in range(len(parts)))
    for key in every:
        folder, _, name = key.rpartition("/")
        if folder in parents and name in DOCUMENT_NAMES and name != ".zmetadata":
            chosen.add(key)
    return sorted(chosen)


def _document_order(key: str) -> tuple[int, int, str]:
    """Deepest first; in a folder ``.zattrs``, then the node document, then ``.zmetadata``.

    Consolidated metadata (format 2) is what makes a whole hierarchy visible at once to
    readers that trust it, so it comes very last.
    """
    name = key.rpartition("/")[2]
    rank = {"zarr.json": 1, ".zgroup": 1, ".zarray": 1, ".zmetadata": 2}.get(name, 0)
    return (-key.count("/"), rank, key)


@dataclass(frozen=True, slots=True)
class TransferPlan:
    """Tasks of one copy: data batches (run in any order), then the documents.

    Attributes
    ----------
    data
        Batches of data keys, one task each.
    documents
        Metadata documents in write order (deepest first, root last), one final task.
    bytes
        Bytes to copy (listed sizes).
    """

    data: tuple[tuple[str, ...], ...]
    documents: tuple[str, ...]
    bytes: int = 0

    @property
    def objects(self) -> int:
        """Objects to copy."""
        return sum(len(b) for b in self.data) + len(self.documents)


def plan_transfer(
    sizes: Mapping[str, int],
    *,
    batch_bytes: int,
    batch_objects: int,
    parallelism: int = 1,
    min_objects: int = 64,
    min_bytes: int = 64 * 2**20,
) -> TransferPlan:
    """Cut the objects to copy into tasks of about equal bytes, documents last.

    The number of data tasks is the largest of: enough to keep each under *batch_bytes* and
    *batch_objects*, and *parallelism* (every thread busy) when that leaves each task at
    least *min_objects* objects or *min_bytes* bytes (many requests in flight per task pay
    off only then; large objects are worth splitting for their bytes).

    Parameters
    ----------
    sizes
        Key → stored bytes of every object to copy.
    batch_bytes, batch_objects
        Upper bounds of one data task.
    parallelism
        Threads that run the tasks.
    min_objects, min_bytes
        Fewest objects, or bytes, a task gets when splitting only for parallelism.

    Examples
    --------
    >>> p = plan_transfer({"zarr.json": 9, "c/0": 5, "c/1": 5}, batch_bytes=5, batch_objects=9)
    >>> p.data, p.documents
    ((('c/0',), ('c/1',)), ('zarr.json',))
    """
    docs = sorted((k for k in sizes if is_document(k)), key=_document_order)
    data = sorted(k for k in sizes if not is_document(k))
    total = sum(sizes[k] for k in data)
    count = max(
        math.ceil(total / max(1, batch_bytes)),
        math.ceil(len(data) / max(1, batch_objects)),
        min(parallelism, max(len(data) // max(1, min_objects), total // max(1, min_bytes))),
        1 if data else 0,
    )
    batches: list[tuple[str, ...]] = []
    current: list[str] = []
    done_bytes = 0
    for key in data:
        current.append(key)
        done_bytes += sizes[key]
        # close a batch once its share of bytes (or of objects) is reached
        k = len(batches) + 1
        full = len(current) >= batch_objects or done_bytes >= total * k / count
        if full and k < count:
            batches.append(tuple(current))
            current = []
    if current:
        batches.append(tuple(current))
    return TransferPlan(tuple(batches), tuple(docs), total + sum(sizes[k] for k in docs))


@dataclass(frozen=True, slots=True)
class ResumeDecision:
    """What a rerun does with each object a previous run recorded.

    Attributes
    ----------
    skip
        Recorded keys whose source is unchanged: skipped if the target still matches.
    changed
        Recorded keys whose source changed since (size or version): copied again, reported.
    copy
        Keys with no usable record: copied.
    """

    skip: dict[str, tuple[int, str]] = field(default_factory=dict)
    changed: tuple[str, ...] = ()
    copy: tuple[str, ...] = ()


def decide_resume(
    source: Mapping[str, ObjectInfo],
    records: Mapping[str, tuple[int, str, str | None]],
) -> ResumeDecision:
    """Split the source keys by what the previous run recorded about them.

    Parameters
    ----------
    source
        Key → ``(size, version)`` of every object to copy, listed now.
    records
        Key → ``(size, hash, version)`` the previous run recorded after copying (and
        verifying) it.

    Returns
    -------
    ResumeDecision
        ``skip`` maps a key to the ``(size, hash)`` its target copy must still have.

    Examples
    --------
    >>> d = decide_resume({"a": (3, "e1"), "b": (3, "e2"), "c": (1, None)},
    ...                   {"a": (3, "h", "e1"), "b": (3, "h", "e0")})
    >>> sorted(d.skip), d.changed, d.copy
    (['a'], ('b',), ('c',))
    """
    skip: dict[str, tuple[int, str]] = {}
    changed: list[str] = []
    copy: list[str] = []
    for key, (size, version) in source.items():
        record = records.get(key)
        if record is None:
            copy.append(key)
        elif record[0] != size or record[2] != version:
            changed.append(key)
        else:
            skip[key] = (record[0], record[1])
    return ResumeDecision(skip, tuple(sorted(changed)), tuple(sorted(copy)))
