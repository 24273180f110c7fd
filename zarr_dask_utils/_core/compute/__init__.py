"""Compute: the cluster, the operation door, the graph runner, progress and tree reduction.

:func:`~zarr_dask_utils._core.compute.operation.operation` is the one door every public
operation enters; graphs shared by several features (the hierarchy's document reads, the chunk
inventory) are built here too.  May import every other ``_core`` layer (pure, checks, storage,
decoding), Dask and distributed; never a feature.
"""
