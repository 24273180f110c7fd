"""zarrs' codec pipeline, with zarr's own for the arrays zarrs cannot serve (array by array).

zarrs-python already falls back to zarr's ``BatchedCodecPipeline`` for codecs it does not
know (its ``get_codec_pipeline_fallback``), but fails on a few arrays it accepts: format 2
``order: F``, format 2 big-endian dtypes, a shuffle with ``elementsize`` 0 (see
:func:`~zarr_dask_utils._core.pure.zarrs_support.zarrs_unsupported_reason`).  zarr-python
reads all of those, so :class:`ZduZarrsCodecPipeline` hands exactly those arrays to zarr's own
pipeline and every other array to zarrs.

Importing this module needs ``zarrs`` and registers the class with zarr (its
``codec_pipeline.path`` is :data:`ZDU_ZARRS_PATH`); worker processes import it on unpickling.
"""

from __future__ import annotations

import logging
from typing import Any

from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import register_pipeline
from zarrs import ZarrsCodecPipeline
from zarrs.pipeline import array_metadata_to_codecs

from zarr_dask_utils._core.pure.zarrs_support import zarrs_unsupported_reason

__all__ = ["ZDU_ZARRS_PATH", "ZduZarrsCodecPipeline"]

logger = logging.getLogger(__name__)


class ZduZarrsCodecPipeline(ZarrsCodecPipeline):
    """``zarrs.ZarrsCodecPipeline``, or zarr's own pipeline for arrays zarrs cannot serve."""

    @classmethod
    def from_array_metadata_and_store(cls, array_metadata: Any, store: Any) -> Any:
        """Return zarrs' pipeline for *array_metadata*, or zarr's ``BatchedCodecPipeline``."""
        reason = zarrs_unsupported_reason(array_metadata.to_dict())
        if reason is None:
            return super().from_array_metadata_and_store(array_metadata, store)
        logger.debug("zarr's own codec pipeline for an array zarrs cannot serve: %s", reason)
        return BatchedCodecPipeline.from_codecs(array_metadata_to_codecs(array_metadata))


#: zarr's ``codec_pipeline.path`` of :class:`ZduZarrsCodecPipeline`
ZDU_ZARRS_PATH = f"{__name__}.{ZduZarrsCodecPipeline.__qualname__}"

register_pipeline(ZduZarrsCodecPipeline)
