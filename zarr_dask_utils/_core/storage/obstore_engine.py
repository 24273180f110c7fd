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
    "choose_engine",
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


def choose_engine(url: str, options: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """*options* with the engine an ``s3://`` *url* should use, and why (for the report).

    The storage option ``zdu_engine`` wins when given.  Otherwise obstore is chosen when it is
    installed and takes every option given (it moves several times more small requests per
    core than s3fs); s3fs stays when obstore is missing or an option has no obstore
    equivalent.  Other URLs are returned unchanged with an empty reason.

    Examples
    --------
    >>> choose_engine("s3://b/x.zarr", {"zdu_engine": "s3fs"})
    ({'zdu_engine': 's3fs'}, "s3fs (storage option zdu_engine='s3fs')")
    >>> choose_engine("/data/x.zarr", None)
    ({}, '')
    """
    opts = dict(options or {})
    if not url.startswith(("s3://", "s3a://")):
        return opts, ""
    if ENGINE_OPTION in opts:
        engine = split_engine(opts)[0]
        return opts, f"{engine} (storage option {ENGINE_OPTION}={engine!r})"
    if not url.startswith("s3://"):
        return opts, "s3fs (the default for s3a:// URLs)"
    if not obstore_available():
        return opts, "s3fs (obstore is not installed: pip install 'zarr-dask-utils[s3]')"
    try:
        obstore_config(url, opts)
    except InvalidOptionError:
        unknown = sorted(set(opts) - set(_RENAMED) - _S3FS_ONLY - {"anon", "client_kwargs"})
        return opts, f"s3fs (obstore takes no {', '.join(unknown) or 'client_kwargs'})"
    opts[ENGINE_OPTION] = "obstore"
    return opts, f"obstore (installed: chosen automatically; {ENGINE_OPTION}='s3fs' forces s3fs)"


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
    if "access_key_id" in cfg and "secret_access_key" in cfg:
        cfg["credential_provider"] = _StaticCredentials(
            cfg.pop("access_key_id"), cfg.pop("secret_access_key"), cfg.pop("session_token", None)
        )
    return ObjectStore(S3Store(bucket, **cfg), read_only=read_only)


class _StaticCredentials:
    """The key, secret and token given, and nothing from the environment.

    obstore fills credentials it was not given from ``AWS_*`` environment variables, so a key
    and secret passed with an ambient ``AWS_SESSION_TOKEN`` would be sent with that token
    and refused (``InvalidToken``); s3fs (botocore) uses given credentials as a set.  A
    credential provider makes obstore do the same.
    """

    def __init__(self, key: str, secret: str, token: str | None) -> None:
        self._credential = {
            "access_key_id": key,
            "secret_access_key": secret,
            "token": token,
            "expires_at": None,
        }

    def __call__(self) -> dict[str, Any]:
        return self._credential

    def __repr__(self) -> str:  # never show the secret
        return "_StaticCredentials(<redacted>)"
