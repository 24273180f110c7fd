"""Secrets never leave ``zdu``: one redactor per command, on every text printed and logged.

:func:`start_redaction` (called when the ``zdu`` group starts) makes a fresh
:class:`~zarr_dask_utils._core.storage.redaction.Redactor` that knows the credential variables of
the environment and the secret keys of the Dask config, and installs :data:`FILTER` on every
logging handler of the process (ours, distributed's and the last-resort handler used by
loggers without one).  The command wrapper then tells it the command's arguments
(:func:`learn_arguments`: URL credentials, ``-o secret=...``), and the renderers pass every
report, JSON document, error and traceback through :func:`current_redactor`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from zarr_dask_utils._core.storage.redaction import RedactingFilter, Redactor, is_secret_key

__all__ = ["FILTER", "current_redactor", "learn_arguments", "start_redaction"]

FILTER = RedactingFilter()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Like ``logging.lastResort``: writes to whatever ``sys.stderr`` is at the time."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.setLevel(level)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        del value


def _all_handlers() -> Iterable[logging.Handler]:
    yield from logging.getLogger().handlers
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield from logger.handlers


def start_redaction() -> Redactor:
    """Begin a command: a new redactor, filtering every logging handler of the process."""
    FILTER.redactor = Redactor.from_environment()
    install_filter()
    return FILTER.redactor


def install_filter() -> None:
    """Add :data:`FILTER` to every handler now configured (idempotent).

    Loggers without a handler print warnings through ``logging.lastResort``; it is replaced by
    an equivalent handler (stderr, WARNING) that redacts too.
    """
    if logging.lastResort is not None and FILTER not in logging.lastResort.filters:
        logging.lastResort = _StderrHandler(logging.WARNING)
    for handler in [*_all_handlers(), *([logging.lastResort] if logging.lastResort else [])]:
        handler.addFilter(FILTER)


def current_redactor() -> Redactor:
    """The redactor of the running command."""
    return FILTER.redactor


def learn_arguments(arguments: Mapping[str, Any]) -> None:
    """Tell the running command's redactor about the secrets in its raw CLI *arguments*.

    Strings are checked for ``user:password@`` URL credentials; tuples of ``KEY=VALUE``
    storage options contribute the values of secret keys (``key``, ``secret``, ``token``, …).
    """
    redactor = FILTER.redactor
    for value in arguments.values():
        if isinstance(value, str):
            redactor.add_url(value)
        elif isinstance(value, tuple | list):
            for item in value:
                if not isinstance(item, str):
                    continue
                redactor.add_url(item)
                name, sep, raw = item.partition("=")
                redactor.add_url(raw)  # endpoint_url=http://user:password@host
                if sep and is_secret_key(name.rsplit(".", 1)[-1]):
                    redactor.add(raw)
                    redactor.add(raw.strip('"'))
