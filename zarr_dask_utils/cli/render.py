"""Render reports and errors for the terminal, for machines (``--json``) and as HTML."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import click

from zarr_dask_utils._core.errors import ChunkUnreadableError, ZarrDaskUtilsError
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils._core.storage.redaction import Redactor
from zarr_dask_utils.cli.redact import current_redactor
from zarr_dask_utils.debug.explain import explain_zarr_error

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "render_error", "render_report"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def render_report(
    report: Report, *, as_json: bool, html: str | None, redactor: Redactor | None = None
) -> int:
    """Print *report* and return the exit code (0 healthy, 1 findings).

    Every text written (terminal, JSON, HTML file) goes through *redactor* (default: the
    running command's, see :mod:`zarr_dask_utils.cli.redact`).
    """
    hide = redactor or current_redactor()
    if html:
        Path(html).write_text(
            hide(
                "<!doctype html><meta charset='utf-8'><title>zdu report</title>"
                + report._repr_html_()
            )
        )
    if as_json:
        click.echo(hide(json.dumps(hide.data(report.to_dict()), indent=2, default=str)))
    else:
        click.echo(hide(str(report)))
    return EXIT_OK if report.ok else EXIT_FINDINGS


def render_error(
    exc: BaseException, *, as_json: bool, debug: bool, redactor: Redactor | None = None
) -> int:
    """Print an error as one readable paragraph (JSON with ``--json``); return its exit code.

    Exit code 2 (bad input), except 1 for :class:`ChunkUnreadableError` (a damaged chunk is a
    problem found in the data, as a report's findings are).

    The message, the JSON document and the ``--debug`` traceback go through *redactor*
    (default: the running command's).
    """
    hide = redactor or current_redactor()
    if isinstance(exc, ZarrDaskUtilsError):
        payload: dict[str, Any] = exc.to_dict()
        text = f"error: {exc}"
    else:
        explanation = explain_zarr_error(exc)
        if explanation.known:
            payload = explanation.to_dict()
            text = f"error: {explanation}"
        else:
            payload = {"kind": "unexpected", "type": type(exc).__name__, "message": str(exc)}
            text = (
                f"error: unexpected {type(exc).__name__}: {exc}\n"
                "This is not one of the errors zdu knows how to explain. Rerun with --debug for "
                "the traceback, and report it if it looks like a bug in zarr-dask-utils."
            )
    if debug:
        click.echo(hide("".join(traceback.format_exception(exc))), err=True)
    if as_json:
        click.echo(hide(json.dumps({"error": hide.data(payload)}, indent=2)))
    click.echo(hide(text), err=True)
    # a damaged chunk is a problem found in the data, not bad input
    return EXIT_FINDINGS if isinstance(exc, ChunkUnreadableError) else EXIT_USAGE
