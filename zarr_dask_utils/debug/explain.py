"""``explain_zarr_error``: what happened, the likely cause and the fix, for real errors.

The knowledge lives in a table (:data:`~zarr_dask_utils.debug.error_table.RULES`), not in an
if/elif ladder: each row names exception types and a message pattern.  The whole exception
chain (``__cause__`` / ``__context__``) is searched, outermost first, because zarr and s3fs
often wrap the telling error (``FileNotFoundError`` from ``NoSuchBucket``).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.errors import ZarrDaskUtilsError, exception_chain
from zarr_dask_utils._core.storage.locations import redact
from zarr_dask_utils.debug.error_table import RULES, ErrorRule

__all__ = ["ErrorExplanation", "explain_zarr_error"]


@dataclass(frozen=True, slots=True)
class ErrorExplanation:
    """A readable account of an exception.

    Parameters
    ----------
    known
        ``True`` when a table row (or a zarr-dask-utils error) explains the exception.
    kind
        Stable code (``"group-not-found"``); ``"unknown"`` when not known.
    what, cause, fix
        What happened, the likely cause, the next step (``""`` when unknown).
    exception_type
        Qualified type name of the exception that was explained (the matching one in the
        chain, or the outer one).
    message
        Its message, credentials in URLs removed.
    exception
        The original exception, traceback attached (not part of ``to_dict``).
    """

    known: bool
    kind: str
    what: str
    cause: str
    fix: str
    exception_type: str
    message: str
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (without the exception object)."""
        return {
            "known": self.known,
            "kind": self.kind,
            "what": self.what,
            "cause": self.cause,
            "fix": self.fix,
            "exception_type": self.exception_type,
            "message": self.message,
        }

    def __str__(self) -> str:
        if not self.known:
            return (
                f"{self.exception_type}: {self.message}\n"
                "  (not an error zarr-dask-utils knows how to explain; the original exception "
                "and traceback are unchanged)"
            )
        lines = [self.what]
        if self.message != self.what:
            lines.append(f"  error: {self.exception_type}: {self.message}")
        if self.cause:
            lines.append(f"  likely cause: {self.cause}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{esc(v)}</td></tr>"
            for k, v in (
                ("what", self.what),
                ("error", f"{self.exception_type}: {self.message}"),
                ("cause", self.cause),
                ("fix", self.fix),
            )
            if v
        )
        return f"<div><strong>{esc(self.kind)}</strong><table>{rows}</table></div>"


def _type_name(exc: BaseException) -> str:
    klass = type(exc)
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


_QUOTED_PATH = re.compile(r"'([^']+)'|\"([^\"]+)\"|^(\S+) does not exist")


def _path_named(exc: BaseException) -> str:
    """The path an exception is about (``filename``, else quoted in its message), redacted."""
    filename = getattr(exc, "filename", None)
    if filename:
        return repr(redact(str(filename)))
    match = _QUOTED_PATH.search(str(exc))
    if match:
        return repr(redact(next(g for g in match.groups() if g)))
    return "the path"


def _find_rule(exc: BaseException) -> tuple[ErrorRule, BaseException] | None:
    for err in exception_chain(exc):
        for rule in RULES:
            if rule.matches(err):
                return rule, err
    return None


def explain_zarr_error(exc: BaseException) -> ErrorExplanation:
    """Explain an exception raised by zarr, numcodecs, fsspec/s3fs, xarray or dask.

    Parameters
    ----------
    exc
        The exception (with its chain, as raised).

    Returns
    -------
    ErrorExplanation
        ``known=False`` (and the original message) when no row of the table matches; the
        exception itself is never changed or re-raised here, so its traceback stays intact.

    See Also
    --------
    zarr_dask_utils.debug.error_table.RULES : the table of known errors.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import explain_zarr_error
    >>> try:
    ...     zarr.open_group(zarr.storage.MemoryStore(), mode="r")
    ... except Exception as err:
    ...     explanation = explain_zarr_error(err)
    >>> explanation.kind
    'group-not-found'
    """
    if isinstance(exc, ZarrDaskUtilsError):
        return ErrorExplanation(
            known=True,
            kind=exc.kind,
            what=str(exc),
            cause="",
            fix="",
            exception_type=_type_name(exc),
            message=str(exc),
            exception=exc,
        )
    found = _find_rule(exc)
    if found is None:
        return ErrorExplanation(
            known=False,
            kind="unknown",
            what="",
            cause="",
            fix="",
            exception_type=_type_name(exc),
            message=redact(str(exc)),
            exception=exc,
        )
    rule, err = found
    return ErrorExplanation(
        known=True,
        kind=rule.kind,
        what=rule.what.replace("{path}", _path_named(err)),
        cause=rule.cause,
        fix=rule.fix,
        exception_type=_type_name(err),
        message=redact(str(err)),
        exception=exc,
    )
