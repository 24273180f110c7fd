"""Which zarr codec pipeline the workers use: zarr-python's own, or zarrs (Rust) when installed.

zarr-python 3 decodes and encodes chunks through a pluggable *codec pipeline*
(``zarr.config["codec_pipeline.path"]``).  The ``zarrs`` package (extra
``zarr-dask-utils[zarrs]``) provides ``zarrs.ZarrsCodecPipeline``, which reads, decodes,
encodes and writes chunks in Rust.  The setting ``zarr-dask-utils.codec-pipeline`` chooses:

``auto`` (default)
    zarrs when it is installed (in the process that runs the operation), else zarr's own;
``zarrs``
    zarrs, or an error naming the extra when it is not installed;
``zarr``
    always zarr-python's own pipeline.

The choice applies where every chunk is read and written, in the workers (tasks open their
arrays there): a :class:`CodecPipelinePlugin` sets zarr's config in each worker process, now
and on workers that join later; workers that share this process (the threaded embedded
``LocalCluster``) get it in this process for the operation only (:func:`use_codec_pipeline`
puts the caller's setting back afterwards).  Arrays on stores zarrs does not serve (s3fs,
memory) fall back to zarr's own pipeline, array by array (zarrs's warning about it is
silenced), and so do arrays zarrs accepts but cannot read or write (format 2 ``order: F``
or big-endian, a shuffle with element size 0: :mod:`.zarrs_pipeline`).  A worker where zarrs
cannot be imported keeps zarr's pipeline and logs why.  The
engine line of every report names the pipeline (:func:`describe_codec_pipeline`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from distributed import Client, WorkerPlugin

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = [
    "PIPELINE_PATHS",
    "CodecPipelineChoice",
    "CodecPipelinePlugin",
    "choose_codec_pipeline",
    "describe_codec_pipeline",
    "use_codec_pipeline",
    "zarrs_installed",
]

logger = logging.getLogger(__name__)

#: zarr's ``codec_pipeline.path`` for each choice.
PIPELINE_PATHS = {
    "zarr": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    # zarrs, with zarr's own for the arrays zarrs cannot serve (see zarrs_pipeline.py)
    "zarrs": "zarr_dask_utils._core.compute.zarrs_pipeline.ZduZarrsCodecPipeline",
}
_SETTINGS = ("auto", "zarr", "zarrs")


def zarrs_installed() -> bool:
    """Whether the ``zarrs`` package can be imported in this process."""
    return importlib.util.find_spec("zarrs") is not None


@dataclass(frozen=True, slots=True)
class CodecPipelineChoice:
    """The codec pipeline an operation's workers use, and why.

    Attributes
    ----------
    name
        ``"zarr"`` or ``"zarrs"``.
    reason
        Why, for the engine line (``"installed; codec-pipeline: auto"``).
    """

    name: str
    reason: str

    @property
    def path(self) -> str:
        """The ``codec_pipeline.path`` (zarr config) of this choice."""
        return PIPELINE_PATHS[self.name]

    def describe(self) -> str:
        """``codec pipeline zarrs (installed; codec-pipeline: auto)``."""
        return f"codec pipeline {self.name} ({self.reason})"


def choose_codec_pipeline(setting: str | None = None) -> CodecPipelineChoice:
    """Resolve ``auto | zarr | zarrs`` (default: ``zarr-dask-utils.codec-pipeline``).

    Parameters
    ----------
    setting
        Explicit setting; ``None`` reads the config.

    Returns
    -------
    CodecPipelineChoice

    Raises
    ------
    InvalidOptionError
        An unknown setting, or ``zarrs`` when the package is not installed.

    Examples
    --------
    >>> choose_codec_pipeline("zarr").describe()
    'codec pipeline zarr (codec-pipeline: zarr)'
    """
    value = str(get_option("codec-pipeline", setting) or "auto").lower()
    if value not in _SETTINGS:
        raise InvalidOptionError(
            f"Unknown codec pipeline {value!r} (setting zarr-dask-utils.codec-pipeline): use "
            "'auto' (zarrs when installed), 'zarrs' or 'zarr'."
        )
    if value == "zarr":
        return CodecPipelineChoice("zarr", "codec-pipeline: zarr")
    if zarrs_installed():
        return CodecPipelineChoice("zarrs", f"installed; codec-pipeline: {value}")
    if value == "zarrs":
        raise InvalidOptionError(
            "The codec pipeline 'zarrs' was asked for (zarr-dask-utils.codec-pipeline) but the "
            "zarrs package is not installed: `pip install 'zarr-dask-utils[zarrs]'`, or set "
            "the option to 'auto' or 'zarr'."
        )
    return CodecPipelineChoice("zarr", "zarrs not installed; codec-pipeline: auto")


def _activate(path: str) -> str | None:
    """Set zarr's codec pipeline in this process; return why not when it cannot."""
    import zarr

    if path == PIPELINE_PATHS["zarrs"]:
        why = _register_zarrs()
        if why:
            return why
    zarr.config.set({"codec_pipeline.path": path})
    return None


def _register_zarrs() -> str | None:
    """Register zdu's zarrs pipeline with zarr in this process; return why not when it cannot."""
    if not zarrs_installed():
        return "zarrs is not installed in this process"
    try:
        import zarr_dask_utils._core.compute.zarrs_pipeline  # noqa: F401  (registers it)
    except ImportError as err:  # zarrs present but broken (e.g. a zarr it does not support)
        return f"zarrs cannot be imported: {err}"
    return None


class CodecPipelinePlugin(WorkerPlugin):
    """Worker plugin setting zarr's codec pipeline in every worker process.

    Parameters
    ----------
    path
        zarr's ``codec_pipeline.path`` to set.
    client_process
        ``(hostname, pid)`` of the client: a worker in that very process (threads) is left
        alone, so the caller's own zarr config never changes.
    """

    name = "zdu-codec-pipeline"
    idempotent = False  # registered again when the choice changes between operations

    def __init__(self, path: str, client_process: tuple[str, int]) -> None:
        self.path = path
        self.client_process = client_process

    def setup(self, worker: Any) -> None:
        """Set the pipeline in the worker's process (never raises: zarr's own still works)."""
        del worker
        if (socket.gethostname(), os.getpid()) == self.client_process:
            return
        why = _activate(self.path)
        _ignore_fallback_warning()
        if why:
            logger.warning("codec pipeline %s not used on this worker: %s", self.path, why)


def _workers_share_this_process(client: Client) -> bool:
    """Whether the client's cluster runs its workers in this process (threads)."""
    cluster = getattr(client, "cluster", None)
    return cluster is not None and getattr(cluster, "processes", True) is False


#: zarrs warns once per array it cannot serve (a store other than local files, e.g. s3fs or
#: memory) and falls back to zarr's own pipeline for that array: expected here, not news.
_FALLBACK_WARNING = "Array is unsupported by ZarrsCodecPipeline"


def _ignore_fallback_warning() -> None:
    warnings.filterwarnings("ignore", message=_FALLBACK_WARNING, category=UserWarning)


@contextmanager
def use_codec_pipeline(client: Client) -> Iterator[CodecPipelineChoice]:
    """Make *client*'s workers use the configured codec pipeline while the context is open.

    Worker processes get a :class:`CodecPipelinePlugin` (workers joining later get it too;
    it stays set there).  Workers in this process (a threaded ``LocalCluster``) share this
    process's zarr config: it is set on entry and put back on exit, so the caller's own zarr
    settings hold again after the operation.  Never fails an operation over speed: a
    cluster that refuses the plugin keeps zarr's own pipeline.

    Parameters
    ----------
    client
        The operation's client.

    Yields
    ------
    CodecPipelineChoice
        What the workers use (also named in the engine line, :func:`describe_codec_pipeline`).

    Raises
    ------
    InvalidOptionError
        From :func:`choose_codec_pipeline`.
    """
    import zarr

    choice = choose_codec_pipeline()
    plugin = CodecPipelinePlugin(choice.path, (socket.gethostname(), os.getpid()))
    try:
        client.register_plugin(plugin)
    except (OSError, RuntimeError, TypeError, ValueError) as err:  # speed, not correctness
        logger.debug("could not register the codec pipeline plugin: %s", err)
        choice = CodecPipelineChoice("zarr", "the cluster refused the worker plugin")
    _CHOSEN[client] = choice
    if not _workers_share_this_process(client):
        yield choice
        return
    before = zarr.config.get("codec_pipeline.path")
    if choice.name == "zarrs" and (why := _register_zarrs()):
        logger.warning("codec pipeline zarrs not used in this process: %s", why)
        choice = _CHOSEN[client] = CodecPipelineChoice("zarr", why)
    with warnings.catch_warnings():
        _ignore_fallback_warning()
        zarr.config.set({"codec_pipeline.path": choice.path})
        try:
            yield choice
        finally:
            zarr.config.set({"codec_pipeline.path": before})


_CHOSEN: weakref.WeakKeyDictionary[Client, CodecPipelineChoice] = weakref.WeakKeyDictionary()


def describe_codec_pipeline(client: Client) -> str:
    """The engine-line part naming *client*'s workers' codec pipeline."""
    choice = _CHOSEN.get(client)
    return choice.describe() if choice else "codec pipeline zarr (default)"
