"""Core: what every feature shares, in layers whose imports point down only.

- :mod:`.pure`: vocabulary (metadata key names, documents, node summaries), chunk grids, cost
  model, chunk choice, partitioning, report bases.  ints, tuples, dicts in; frozen dataclasses
  out; no zarr I/O, no Dask, no clock.
- :mod:`.checks`: metadata-document checks (pure: documents in, findings out), judged with
  zarr-python's metadata model; shared by ``metadata`` and ``debug``.
- :mod:`.storage`: store I/O: locations, probing, key I/O and listings, object streams,
  outputs, resume markers, tracing store.
- :mod:`.decoding`: the chunk-decoding engine.
- :mod:`.compute`: Dask: the cluster, the operation door, graph runner, progress, tree
  reduction, graphs shared by several features.
- :mod:`.config`, :mod:`.errors`: options and the error hierarchy (importable from anywhere).

Order: ``pure`` < ``checks`` < ``storage`` < ``decoding`` < ``compute``; a module imports only
from its own layer, the layers before it, ``config`` and ``errors``.  ``_core`` never imports a
feature.
"""
