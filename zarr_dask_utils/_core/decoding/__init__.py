"""The chunk-decoding engine shared by the features (integrity today; profiling, conversion next).

- :mod:`.direct_decoder`: plain codec chains decoded with numcodecs into one reused buffer;
- :mod:`.pipeline_decoder`: every other chain through zarr's own codec pipeline, per key;
- :mod:`.block_reader`: blocks of whole chunks as an array-like for ``dask.array.from_array``;
- :mod:`.classify`: a decode error message → its finding code (pure).
"""
