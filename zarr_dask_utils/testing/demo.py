"""``python -m zarr_dask_utils.testing.demo PATH``: build the demo store used by ``make demo``.

The store has the problems real pipelines leave behind: consolidated metadata that is stale
(an array was added afterwards, so ``zarr.open_group`` hides it) and a group whose document
was lost (so zarr cannot reach the arrays below it).
"""

from __future__ import annotations

import sys

from zarr_dask_utils.testing.builders import build_demo_store


def main(argv: list[str] | None = None) -> int:
    """Build the demo store at the path given on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zarr_dask_utils.testing.demo PATH", file=sys.stderr)
        return 2
    path = build_demo_store(args[0])
    print(f"built demo store with stale consolidated metadata and a missing group document: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
