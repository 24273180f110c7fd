"""``zdu profile [--html FILE] [--json] -- COMMAND ...``: profile any other ``zdu`` command.

The inner command runs in this process, on the profile's cluster (the scheduler named here, or
an embedded one made current for it), inside :func:`~zarr_dask_utils.profile_zarr_operation`.
Its own output is printed first (on stderr with ``--json``, so stdout holds one JSON document),
then the profile.  The exit code is the inner command's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Sequence

import click

from zarr_dask_utils._core.compute.cluster import get_client
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.storage.outputs import probe_file_writable
from zarr_dask_utils.cli.redact import current_redactor, learn_arguments
from zarr_dask_utils.cli.render import EXIT_OK, render_error, render_report

__all__ = ["profile"]


def _run_inner(ctx: click.Context, args: Sequence[str]) -> int:
    """Run the ``zdu`` command *args* in this process; its exit code."""
    root = ctx.find_root()
    group = root.command
    if not isinstance(group, click.Group):  # pragma: no cover - profile is always in the group
        raise InvalidOptionError("zdu profile must run inside the zdu command group.")
    name, command, rest = group.resolve_command(root, list(args))
    if command is None or name in ("profile", "bench"):
        raise InvalidOptionError(
            f"zdu profile runs one other zdu command, e.g. `zdu profile -- check STORE --deep`; "
            f"{name!r} cannot be profiled this way."
        )
    sub = command.make_context(str(name), rest, parent=root)
    with sub:
        try:
            command.invoke(sub)
        except click.exceptions.Exit as done:
            return int(done.exit_code)
    return EXIT_OK


@click.command(
    "profile",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--html", type=click.Path(dir_okay=False), help="Write the profile as HTML.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.option("--scheduler", metavar="ADDRESS", help="Address of a Dask scheduler.")
@click.option(
    "--scheduler-file",
    type=click.Path(dir_okay=False),
    help="Scheduler file written by `dask scheduler --scheduler-file`.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def profile(
    ctx: click.Context,
    html: str | None,
    as_json: bool,
    scheduler: str | None,
    scheduler_file: str | None,
    command: tuple[str, ...],
) -> None:
    """Profile COMMAND (any zdu command): time, store requests, memory and a verdict.

    Example: zdu profile --html profile.html -- check STORE --deep

    The verdict says what bounds the run (latency, bandwidth, decoding, task overhead or
    memory) and the next step.  Exit code: the profiled command's.
    """
    from zarr_dask_utils.profiling import profile_zarr_operation

    debug = ctx.obj.get("debug", False) if ctx.obj else False
    learn_arguments({"command": command})

    def run() -> int:
        return _run_inner(ctx, command)

    run.__qualname__ = "zdu " + " ".join(command)  # the report's location
    try:
        if html:
            probe_file_writable(html, what="HTML profile")
        with get_client(scheduler=scheduler, scheduler_file=scheduler_file) as client:
            # --json: the inner command's own report goes to stderr, stdout is the profile's
            redirect = contextlib.redirect_stdout(sys.stderr) if as_json else None
            with redirect or contextlib.nullcontext():
                report = profile_zarr_operation(run, client=client)
            render_report(report, as_json=as_json, html=None)
            if html:
                # while the cluster is up: Dask's report is rendered from its scheduler.
                # The command line is the one text in the file a user typed (URL
                # credentials); store names never carry credentials (``trace.store_label``)
                hide = current_redactor()
                shown = dataclasses.replace(report, location=hide(report.location))
                path = shown.save_html(html)
                click.echo(f"profile written to {path}", err=True)
        code = int(report.result)
    except Exception as exc:
        code = render_error(exc, as_json=as_json, debug=debug)
    ctx.exit(code)
