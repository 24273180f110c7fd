"""Configuration: packaged defaults in ``zarr_dask_utils.yaml`` under ``zarr-dask-utils.*``.

The defaults are merged into :mod:`dask.config` with ``update_defaults`` when the package is
imported (nothing is written to the user's config directory), so users override them the Dask
way: ``~/.config/dask/*.yaml``, ``DASK_ZARR_DASK_UTILS__IO__CONCURRENCY=128`` or
``dask.config.set({"zarr-dask-utils.io.concurrency": 128})``.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from typing import Any

import dask.config
import yaml

__all__ = ["get_option", "load_defaults"]

_PREFIX = "zarr-dask-utils"
_defaults: dict[str, Any] | None = None


def load_defaults() -> None:
    """Merge the packaged defaults into ``dask.config`` once (idempotent)."""
    global _defaults
    if _defaults is not None:
        return
    text = files("zarr_dask_utils").joinpath("zarr_dask_utils.yaml").read_text()
    _defaults = yaml.safe_load(text)
    dask.config.update_defaults(_defaults)


def get_option(key: str, value: Any = None) -> Any:
    """Return *value* unless it is ``None``, else ``zarr-dask-utils.<key>`` from dask config.

    Parameters
    ----------
    key
        Dotted key below ``zarr-dask-utils``, e.g. ``"io.concurrency"``.
    value
        An explicit value from the caller; wins when not ``None``.
    """
    if value is not None:
        return value
    load_defaults()
    try:
        return dask.config.get(f"{_PREFIX}.{key}")
    except KeyError:
        # Leaving a ``dask.config.set`` block entered before the defaults were first loaded
        # deletes them again; put back the missing keys (set values win).
        dask.config.update(dask.config.config, copy.deepcopy(_defaults or {}), priority="old")
        return dask.config.get(f"{_PREFIX}.{key}")
