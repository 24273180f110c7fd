"""The one door every public operation goes through.

A feature's public function opens :func:`operation`, names the locations it works on, and runs
its graphs through the :class:`Operation` it gets::

    with operation("check", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options)   # resolved and probed once
        docs, listing = op.run([docs_graph, listing_graph])           # one client, a zdu-check span
    return Report(..., engine=op.engine)

The door resolves each location once and probes it once, gets or starts **one** client for the
whole operation (lazily, at the first graph: bad input fails before a cluster starts; threads
in this process when a location is in memory, which worker processes cannot see; an embedded
cluster's threads-or-processes choice sees the operation's locations), runs every
graph in a ``zdu-<op>`` span with progress and cancellation on error, and keeps the engine line
for the report.  On a user's cluster it checks once, before anything is written, that the
workers see the operation's local paths (:mod:`~zarr_dask_utils._core.compute.visibility`).
It is the single place where later cross-cutting work attaches (profiling,
store wrappers, download progress): :data:`OPERATION_HOOKS` are called on entry and exit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zarr_dask_utils._core.compute.cluster import (
    _current_client,
    cluster_threads,
    configured_scheduler_address,
    get_client,
    is_embedded,
)
from zarr_dask_utils._core.compute.runner import GraphResult, _run_graph
from zarr_dask_utils._core.compute.visibility import (
    PathCheck,
    _scheduler_address,
    check_workers_see,
    local_path,
)
from zarr_dask_utils._core.storage.locations import Location, StoreLike, resolve_location
from zarr_dask_utils._core.storage.probe import Probe, probe_location

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["OPERATION_HOOKS", "Operation", "current_operation", "operation"]

logger = logging.getLogger(__name__)

#: Callables ``hook(op) -> contextmanager`` entered around every outermost operation
#: (profiling, tracing); nested operations run inside their parent's hooks.
OPERATION_HOOKS: list[Callable[[Operation], Any]] = []

_CURRENT: ContextVar[Operation | None] = ContextVar("zdu_operation", default=None)


@dataclass(eq=False)
class Operation:
    """State of one public operation: its locations, probes, client and engine record.

    Use :func:`operation` to make one; the attributes are read-only for features.

    Attributes
    ----------
    name
        Operation name; graphs run in the span ``zdu-<name>``.
    locations
        Every location opened, by role (``"source"``, ``"target"``, ``"temp"``, ``"other"``…).
    probes
        The probe of each probed location, by role.
    client_side
        Roles only this process reads or writes (a manifest file): they do not decide where
        graphs run.
    engine
        The engine line of the last graph run (``None`` before the first).
    graphs
        How many graphs ran.
    parent
        The operation this one runs inside (``rechunk`` consolidating its target), whose
        client it shares.
    """

    name: str
    requested_client: Client | None = field(default=None, repr=False)
    progress: bool | None = None
    # why this operation's tasks want worker processes (``embedded_mode``'s ``workload``)
    workload: str | None = None
    parent: Operation | None = field(default=None, repr=False)
    locations: dict[str, Location] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict, repr=False)
    client_side: set[str] = field(default_factory=set, repr=False)
    engine: str | None = None
    graphs: int = 0
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)
    _client: Client | None = field(default=None, repr=False)
    _client_started: bool = field(default=False, repr=False)
    _unchecked: list[PathCheck] = field(default_factory=list, repr=False)
    _checked: set[PathCheck] = field(default_factory=set, repr=False)

    # --- locations -------------------------------------------------------------------------

    def open(
        self,
        store: StoreLike | Location,
        *,
        role: str = "source",
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = True,
        probe: bool = True,
        allow_missing_root: bool = False,
        in_graph: bool = True,
    ) -> Location:
        """Resolve *store* once, probe it (unless ``probe=False``) and remember it as *role*.

        Parameters
        ----------
        store
            Anything :func:`~zarr_dask_utils._core.storage.locations.resolve_location` accepts.
        role
            Name of this location within the operation; each role is opened once.
        storage_options
            fsspec options for a URL.
        read_only
            Open read-only (sources) or writable (targets).
        probe
            Check that Zarr data is there (sources); targets that may not exist yet skip it.
        allow_missing_root
            Accept a missing root document when documents exist one level down.
        in_graph
            Whether graph tasks read or write this location.  ``False`` for a file only this
            process touches (a manifest written or read here): it is recorded, but an
            in-memory one does not make the graphs run on threads.

        Returns
        -------
        Location

        Raises
        ------
        InvalidOptionError
            *role* was opened already in this operation.
        """
        if role in self.locations:
            from zarr_dask_utils._core.errors import InvalidOptionError

            raise InvalidOptionError(f"Operation {self.name!r} opened {role!r} twice.")
        location = resolve_location(store, storage_options=storage_options, read_only=read_only)
        if probe:
            self.probes[role] = probe_location(location, allow_missing_root=allow_missing_root)
        self.locations[role] = location
        if not in_graph:
            self.client_side.add(role)
        path = local_path(location) if in_graph else None
        if path is not None:  # the workers of a user's cluster must see it: checked once
            self._unchecked.append(PathCheck(path, output=not location.read_only))
            if not location.read_only:
                self._check_visible()  # an output: before anything is written to it
        return location

    def probe(self, role: str = "source") -> Probe:
        """The probe of the location opened as *role* (probed now if it was not yet)."""
        if role not in self.probes:
            self.probes[role] = probe_location(self.locations[role])
        return self.probes[role]

    # --- the cluster -------------------------------------------------------------------------

    def want_processes(self, reason: str | None) -> None:
        """Ask for worker processes for an embedded cluster, with *reason* (before it starts).

        ``embedded_mode`` then picks processes under ``cluster.processes=auto`` and the
        engine line gives *reason*; an explicit setting, a user's client or a parent's
        cluster is used as given.  The first reason wins; ``None`` asks nothing, and so does a
        call after the client started (logged: the choice can no longer take effect).
        """
        if reason is None or self.workload is not None:
            return
        if self._client_started:
            logger.info(
                "%s: the cluster started before its workload was known (%s)", self.name, reason
            )
            return
        self.workload = reason

    @property
    def shareable(self) -> bool:
        """Whether worker processes can see every location of this operation."""
        return all(loc.shareable for loc in self._graph_locations())

    @property
    def client(self) -> Client | None:
        """The one client of this operation, started at first use; ``None`` means threads.

        ``None`` when a location is in memory (worker processes cannot see it): graphs then
        run on threads in this process.
        """
        if not self.shareable:
            return None
        if not self._client_started:
            if self.requested_client is None and self.parent is not None and self.parent.shareable:
                self._client = self.parent.client  # a nested operation: the parent's cluster
            else:
                self._client = self._stack.enter_context(
                    get_client(
                        self.requested_client,
                        locations=self._graph_locations(),
                        workload=self.workload,
                    )
                )
            self._client_started = True
            self._check_visible()
        return self._client

    @property
    def threads(self) -> int:
        """Threads that run this operation's tasks (the cluster's, or the local cores)."""
        return cluster_threads(self.client)

    # --- graphs ------------------------------------------------------------------------------

    def run(self, collections: Sequence[Any], *, progress: bool | None = None) -> GraphResult:
        """Compute *collections* in one ``compute`` on this operation's client.

        Parameters
        ----------
        collections
            Delayed objects / Dask collections built by the feature.
        progress
            Override the operation's progress setting for this graph.

        Returns
        -------
        GraphResult
            The values, with ``engine`` (also kept as :attr:`engine`).
        """
        runner = self._runner()
        result = _run_graph(
            collections,
            location=runner,
            op=self.name,
            client=self.client,
            progress=self.progress if progress is None else progress,
        )
        self.engine = result.engine
        self.graphs += 1
        return result

    def _check_visible(self) -> None:
        """Check the local paths opened so far on the workers of a user's cluster (one request).

        Nothing is sent for an embedded cluster or threads in this process (they share this
        host's files); with no client known yet the check waits for the first graph, or, for
        an output, connects to the configured scheduler now.
        """
        if not self._unchecked:
            return
        client = self._visibility_client()
        if not self._unchecked:  # connecting to the scheduler checked them already
            return
        pending, self._unchecked = self._unchecked, []
        if client is None:
            if self._client_started:  # threads in this process
                return
            self._unchecked = pending  # the embedded cluster starts later: decided then
            return
        root = self
        while root.parent is not None:
            root = root.parent
        todo = [c for c in dict.fromkeys(pending) if c not in root._checked]
        if is_embedded(client) or _scheduler_address(client).startswith("inproc://"):
            return
        check_workers_see(client, todo)
        root._checked.update(todo)

    def _visibility_client(self) -> Client | None:
        """The client the graphs will use if it is a user's; ``None`` for threads or embedded."""
        if not self.shareable:
            return None
        if self._client_started:
            return self._client
        if self.requested_client is not None:
            return self.requested_client
        if self.parent is not None and self.parent.shareable:
            return self.parent._visibility_client()
        current = _current_client()
        if current is not None:
            return current
        if configured_scheduler_address():
            return self.client  # connects (to check an output before it is written)
        return None

    def _graph_locations(self) -> list[Location]:
        return [loc for role, loc in self.locations.items() if role not in self.client_side]

    def _runner(self) -> Location:
        graph_locations = self._graph_locations()
        for loc in graph_locations:
            if not loc.shareable:
                return loc
        if graph_locations:
            return graph_locations[0]
        return Location("<none>", "local")

    def close(self) -> None:
        """Close what this operation opened (the embedded cluster, a connection)."""
        self._stack.close()


@contextmanager
def operation(
    name: str,
    *,
    client: Client | None = None,
    progress: bool | None = None,
    workload: str | None = None,
) -> Iterator[Operation]:
    """Enter one public operation: the single place its locations, client and graphs meet.

    Parameters
    ----------
    name
        Operation name (``check``, ``rechunk``…): graphs run in the span ``zdu-<name>``.
    client
        The user's client; otherwise the current one, a configured scheduler or one embedded
        ``LocalCluster`` for the whole operation (see :func:`~zarr_dask_utils.get_client`).
    progress
        Show progress bars (``None``: when a human is watching).
    workload
        Why the tasks want worker processes (e.g. file readers holding a per-process lock):
        an embedded cluster under ``cluster.processes=auto`` then starts them (see
        :func:`~zarr_dask_utils._core.compute.cluster.embedded_mode`).

    Yields
    ------
    Operation
    """
    parent = _CURRENT.get()
    if progress is None and parent is not None:
        progress = parent.progress
    op = Operation(
        name, requested_client=client, progress=progress, parent=parent, workload=workload
    )
    token = _CURRENT.set(op)
    try:
        with ExitStack() as hooks:
            for hook in OPERATION_HOOKS if parent is None else ():
                hooks.enter_context(hook(op))
            yield op
    finally:
        _CURRENT.reset(token)
        op.close()


def current_operation() -> Operation | None:
    """The operation running in this context, if any (``None`` outside every door)."""
    return _CURRENT.get()
