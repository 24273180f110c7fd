"""The store engine seam: ``s3://`` URLs through s3fs (default) or obstore.

A location's ``storage_options`` may carry the project's own key ``zdu_engine``
(``"s3fs"`` or ``"obstore"``).  It travels with the options to every worker, so a store
reopened there uses the same engine.  With ``"obstore"`` the s3fs-style options are mapped
onto obstore's ``S3Store`` (``endpoint_url``/``key``/``secret``/``token``/region/``anon``)
and wrapped in zarr's ``zarr.storage.ObjectStore``; options obstore has no equivalent for are
refused, not silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zarr.abc.store import Store

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = [
    "ENGINES",
    "ENGINE_OPTION",
    "obstore_available",
    "obstore_config",
    "open_obstore",
    "split_engine",
]

ENGINE_OPTION = "zdu_engine"
ENGINES = ("s3fs", "obstore")

# s3fs-style option -> obstore S3Store keyword
_RENAMED = {
    "key": "access_key_id",
    "secret": "secret_access_key",
    "token": "session_token",
    "endpoint_url": "endpoint",
    "region_name": "region",
}
# s3fs settings that have no meaning for obstore but that the tuner may leave behind
_S3FS_ONLY = frozenset(
    {
        "max_concurrency",
        "config_kwargs",
        "default_block_size",
        "default_cache_type",
        "default_fill_cache",
        "use_listings_cache",
        "skip_instance_cache",
        "listings_expiry_time",
        "asynchronous",
    }
)


def obstore_available() -> bool:
    """Whether the optional ``obstore`` package imports."""
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    return True


def split_engine(options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(engine, the other options)`` of *options*; the engine defaults to ``"s3fs"``.

    Raises
    ------
    InvalidOptionError
        An engine name other than ``"s3fs"`` or ``"obstore"``.
    """
    rest = dict(options)
    engine = str(rest.pop(ENGINE_OPTION, "s3fs") or "s3fs")
    if engine not in ENGINES:
        raise InvalidOptionError(
            f"storage option {ENGINE_OPTION}={engine!r} is not an engine: use 's3fs' (the "
            "default) or 'obstore' (pip install 'zarr-dask-utils[s3]')."
        )
    return engine, rest


def obstore_config(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``S3Store`` keywords for an ``s3://bucket/prefix`` URL and s3fs-style *options*.

    Examples
    --------
    >>> cfg = obstore_config("s3://b/x.zarr", {"key": "k", "secret": "s",
    ...                                        "endpoint_url": "http://127.0.0.1:9000"})
    >>> cfg["bucket"], cfg["prefix"], cfg["endpoint"], cfg["client_options"]
    ('b', 'x.zarr', 'http://127.0.0.1:9000', {'allow_http': True})
    """
    if not url.startswith("s3://"):
        raise InvalidOptionError(
            f"{ENGINE_OPTION}='obstore' works for s3:// URLs only, not {url.split('://')[0]}://. "
            f"Remove the {ENGINE_OPTION} storage option for this store."
        )
    bucket, _, prefix = url[len("s3://") :].partition("/")
    cfg: dict[str, Any] = {"bucket": bucket, "prefix": prefix.strip("/") or None}
    opts = dict(options)
    client_kwargs = dict(opts.pop("client_kwargs", None) or {})
    for name in ("endpoint_url", "region_name"):
        if name in client_kwargs:
            opts.setdefault(name, client_kwargs.pop(name))
    if client_kwargs:
        raise InvalidOptionError(
            f"client_kwargs {sorted(client_kwargs)} have no obstore equivalent: leave them out or "
            f"use {ENGINE_OPTION}='s3fs'."
        )
    ignored = sorted(k for k in opts if k in _S3FS_ONLY)
    for name in ignored:
        opts.pop(name)
    if opts.pop("anon", False):
        cfg["skip_signature"] = True
    unknown = sorted(set(opts) - set(_RENAMED))
    if unknown:
        raise InvalidOptionError(
            f"storage options {unknown} have no obstore equivalent (it takes endpoint_url, "
            f"key, secret, token, region_name, anon). Remove them or use {ENGINE_OPTION}='s3fs'."
        )
    for name, value in opts.items():
        cfg[_RENAMED[name]] = value
    endpoint = str(cfg.get("endpoint", ""))
    if endpoint.startswith("http://"):
        cfg["client_options"] = {"allow_http": True}
    if endpoint and "region" not in cfg:
        cfg["region"] = "us-east-1"  # a custom endpoint (MinIO, moto) ignores it; obstore needs one
    return cfg


def open_obstore(url: str, options: Mapping[str, Any], *, read_only: bool) -> Store:
    """A zarr ``ObjectStore`` on obstore's ``S3Store`` for *url*.

    Raises
    ------
    InvalidOptionError
        obstore is not installed, or an option has no obstore equivalent.
    """
    try:
        from obstore.store import S3Store
        from zarr.storage import ObjectStore
    except ImportError as err:
        raise InvalidOptionError(
            f"{ENGINE_OPTION}='obstore' needs the obstore package, which is not installed. "
            f"Install it (pip install 'zarr-dask-utils[s3]') or remove the {ENGINE_OPTION} "
            "storage option to use s3fs."
        ) from err
    cfg = obstore_config(url, options)
    bucket = cfg.pop("bucket")
    return ObjectStore(S3Store(bucket, **cfg), read_only=read_only)
