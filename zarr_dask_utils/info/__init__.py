"""Info (``zdu info``): open one node, or walk a whole hierarchy into a report.

Other features call :func:`walk_hierarchy` through this public face only.
"""

from zarr_dask_utils.info.walk import HierarchyReport, open_node, walk_hierarchy

__all__ = ["HierarchyReport", "open_node", "walk_hierarchy"]
