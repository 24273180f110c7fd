"""The options every ``zdu`` command shares, and the one wrapper that runs a command.

:func:`multi_command` gives a command its positional arguments (the first is the store), the
shared options (``--json``, ``--html``, ``--scheduler``, ``--scheduler-file``,
``-o/--storage-option`` for the first store, ``--no-progress``) and a
``--<name>-storage-option`` for each further location (``zdu compare A B``); it parses them,
gets a client, runs the library function, renders its report, traces store operations under
``zdu --debug`` and maps exceptions to exit codes.  :func:`store_command` is the one-store case.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import click
from distributed import Client

from zarr_dask_utils._core.compute.cluster import get_client
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils._core.storage.outputs import probe_file_writable
from zarr_dask_utils.cli.redact import current_redactor, learn_arguments
from zarr_dask_utils.cli.render import render_error, render_report
from zarr_dask_utils.debug.trace import ZarrDebugger

__all__ = [
    "cluster_mode_option",
    "multi_command",
    "parse_storage_options",
    "set_cluster_mode",
    "store_command",
]

#: ``zdu --processes/--threads``: how the embedded cluster runs (a given scheduler is used as is).
cluster_mode_option = click.option(
    "--processes/--threads",
    "processes",
    default=None,
    help=(
        "Run the embedded cluster as worker processes or as threads in one process "
        "(default: config cluster.processes, 'auto' = threads). --scheduler is used as given."
    ),
)


def set_cluster_mode(ctx: click.Context, processes: bool | None) -> None:
    """Apply ``--processes/--threads`` as ``zarr-dask-utils.cluster.processes`` for this command."""
    if processes is not None:
        import dask.config

        ctx.with_resource(dask.config.set({"zarr-dask-utils.cluster.processes": processes}))


def parse_storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``KEY=VALUE`` pairs into ``storage_options``.

    Values are read as JSON when they parse (``true``, ``3``, ``{"a": 1}``), else as strings;
    dotted keys nest (``client_kwargs.region_name=eu-west-1``).
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidOptionError(
                f"--storage-option {pair!r} is not KEY=VALUE, e.g. "
                "--storage-option endpoint_url=http://127.0.0.1:9000"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return options


@contextmanager
def _client(scheduler: str | None, scheduler_file: str | None) -> Iterator[Client | None]:
    """A client only when the user named a scheduler; otherwise graphs pick one lazily."""
    if scheduler is None and scheduler_file is None:
        yield None
        return
    with get_client(scheduler=scheduler, scheduler_file=scheduler_file) as client:
        yield client


def multi_command(
    arguments: Sequence[str], extra_storage: Sequence[str] = ()
) -> Callable[[Callable[..., Report]], Callable[..., None]]:
    """Decorate a command taking positional *arguments*, then the shared options.

    Parameters
    ----------
    arguments
        Names of the positional arguments, in order (the first is the store).
    extra_storage
        Argument names that get their own ``--<name>-storage-option KEY=VALUE``; the
        function receives them parsed as ``<name>_storage_options``.
    """

    def decorate(func: Callable[..., Report]) -> Callable[..., None]:
        options: list[Callable[[Any], Any]] = [click.argument(a) for a in arguments]
        options += [
            click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
            click.option("--html", type=click.Path(dir_okay=False), help="Also write HTML."),
            click.option("--scheduler", metavar="ADDRESS", help="Address of a Dask scheduler."),
            click.option(
                "--scheduler-file",
                type=click.Path(dir_okay=False),
                help="Scheduler file written by `dask scheduler --scheduler-file`.",
            ),
            click.option(
                "-o",
                "--storage-option",
                "storage_option",
                multiple=True,
                metavar="KEY=VALUE",
                help=f"fsspec storage option of {arguments[0].upper()} (repeatable).",
            ),
            click.option("--no-progress", is_flag=True, help="Do not show a progress bar."),
        ]
        options += [
            click.option(
                f"--{name}-storage-option",
                f"{name}_storage_option",
                multiple=True,
                metavar="KEY=VALUE",
                help=f"fsspec storage option of {name.upper()} (repeatable).",
            )
            for name in extra_storage
        ]

        @click.pass_context
        def wrapper(ctx: click.Context, /, **kwargs: Any) -> None:
            debug = ctx.obj.get("debug", False) if ctx.obj else False
            as_json = kwargs.pop("as_json")
            html = kwargs.pop("html")
            learn_arguments(kwargs)  # URL credentials and -o secret=... are redacted from here on
            try:
                kwargs["storage_options"] = parse_storage_options(kwargs.pop("storage_option"))
                kwargs["storage_options"] = kwargs["storage_options"] or None
                for name in extra_storage:
                    parsed = parse_storage_options(kwargs.pop(f"{name}_storage_option"))
                    kwargs[f"{name}_storage_options"] = parsed or None
                if html:  # before the work, not after it
                    probe_file_writable(html, what="HTML report")
                no_progress = kwargs.pop("no_progress")
                progress = False if (as_json or no_progress) else None
                with ExitStack() as stack:
                    # --debug: trace every store operation, here and on the workers
                    tracer = stack.enter_context(ZarrDebugger()) if debug else None
                    scheduler = kwargs.pop("scheduler"), kwargs.pop("scheduler_file")
                    client = stack.enter_context(_client(*scheduler))
                    report = func(client=client, progress=progress, **kwargs)
                code = render_report(report, as_json=as_json, html=html)
                if tracer is not None:
                    click.echo(current_redactor()(str(tracer.report(report.location))), err=True)
            except Exception as exc:
                code = render_error(exc, as_json=as_json, debug=debug)
            ctx.exit(code)

        wrapper.__doc__ = func.__doc__
        wrapper.__name__ = func.__name__
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def store_command(func: Callable[..., Report]) -> Callable[..., None]:
    """Decorate a command taking one STORE and the shared options (see module docstring)."""
    return multi_command(["store"])(func)
