"""How a message names an option: ``--overwrite`` on the command line, ``overwrite=True`` in Python.

Library functions raise and report in the words of their own API; when ``zdu`` runs them it
enters :func:`cli_messages`, and :func:`option_text` then names the flag that sets the same
option, so a command-line user is never told to pass a keyword argument they cannot type.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["CLI_FLAGS", "cli_messages", "option_text"]

_FROM_CLI: ContextVar[bool] = ContextVar("zarr_dask_utils_from_cli", default=False)

_ANY = object()

# (parameter, value) -> the zdu flag that sets it; value _ANY: the flag takes the value.
CLI_FLAGS: dict[tuple[str, object], str] = {
    ("overwrite", True): "--overwrite",
    ("dry_run", False): "--apply",
    ("dry_run", True): "--dry-run",
    ("deep", True): "--deep",
    ("nan_check", True): "--nan-check",
    ("storage_options", _ANY): "-o/--storage-option KEY=VALUE",
    ("target_storage_options", _ANY): "--dst-storage-option KEY=VALUE",
    ("temp_store", _ANY): "--temp",
    ("max_mem", _ANY): "--max-mem",
    ("target_chunks", _ANY): "--chunks",
    ("target_shards", _ANY): "--shards",
    ("engine", _ANY): "--engine",
}


def option_text(name: str, value: object = _ANY) -> str:
    """Name the option *name* (set to *value*) for whoever called: the CLI or Python code.

    Parameters
    ----------
    name
        The keyword argument of the library function, e.g. ``"overwrite"``.
    value
        The value the message asks for; left out when the message names the option only.

    Returns
    -------
    str
        The ``zdu`` flag inside :func:`cli_messages` when one sets that option (``--overwrite``),
        else the keyword argument (``overwrite=True``).

    Examples
    --------
    >>> option_text("overwrite", True)
    'overwrite=True'
    >>> with cli_messages():
    ...     option_text("overwrite", True)
    '--overwrite'
    """
    if _FROM_CLI.get():
        flag = CLI_FLAGS.get((name, value)) or CLI_FLAGS.get((name, _ANY))
        if flag is not None:
            return flag
    return name if value is _ANY else f"{name}={value!r}"


@contextmanager
def cli_messages() -> Iterator[None]:
    """Within the block, :func:`option_text` names command-line flags (``zdu`` enters it)."""
    token = _FROM_CLI.set(True)
    try:
        yield
    finally:
        _FROM_CLI.reset(token)
