"""``python -m zarr_dask_utils`` runs the ``zdu`` command line."""

from zarr_dask_utils.cli.main import main

if __name__ == "__main__":
    main()
