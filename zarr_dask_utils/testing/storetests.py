"""Run zarr's store conformance suite (``zarr.testing.store.StoreTests``) without pytest-asyncio.

zarr runs its suite with pytest-asyncio; this project does not depend on it, so
:func:`sync_store_tests` wraps each async test of ``StoreTests`` (signature and parametrize marks
kept) and awaits it on zarr's own event loop.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, TypeVar

from zarr.core.sync import sync
from zarr.testing.store import StoreTests

__all__ = ["sync_store_tests"]

T = TypeVar("T", bound=type)


def sync_store_tests(cls: T) -> T:
    """Class decorator: make ``StoreTests``' async tests synchronous on *cls*."""
    for name in dir(StoreTests):
        fn = getattr(StoreTests, name)
        if name.startswith("test_") and inspect.iscoroutinefunction(fn):

            def make(fn: Any) -> Any:
                @functools.wraps(fn)
                def test(self: Any, *args: Any, **kwargs: Any) -> Any:
                    return sync(fn(self, *args, **kwargs))

                return test

            setattr(cls, name, make(fn))
    return cls
