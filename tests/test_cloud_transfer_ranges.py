"""copy_ranged: parts take the byte budget in order and always give it back."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from zarr.storage import LocalStore

from zarr_dask_utils.cloud.transfer_ranges import copy_ranged, hold_now, ranged_parts
from zarr_dask_utils.cloud.transfer_tasks import _ByteBudget

PART = 1000
DATA = bytes(range(256)) * 40  # 10240 bytes: 11 parts of PART bytes


class _Recorded:
    """A real byte budget that records the order parts took it and the most held at once."""

    def __init__(self, limit: int, block_at: int | None = None, fail_at: int | None = None) -> None:
        self.budget = _ByteBudget(limit)
        self.taken: list[int] = []
        self.peak = 0
        self.block_at, self.fail_at = block_at, fail_at
        self.blocked = asyncio.Event()

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        if len(self.taken) == self.fail_at:
            raise RuntimeError("budget refused")  # before the earlier parts' tasks ran
        if len(self.taken) == self.block_at:
            self.blocked.set()
            await asyncio.Event().wait()  # never set: the copy is cancelled here
        async with self.budget.hold(n):
            self.taken.append(n)
            self.peak = max(self.peak, self.budget.held)
            yield


def _copy(tmp_path: Path, budget: _Recorded) -> tuple[int, str | None, bool]:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(DATA)
    src = LocalStore(tmp_path / "src", read_only=True)

    async def run() -> tuple[int, str | None, bool]:
        limit = asyncio.Semaphore(4)
        return await copy_ranged(
            src,
            "big",
            tmp_path / "dst",
            "big",
            len(DATA),
            part_bytes=PART,
            algorithm="sha256",
            hold=budget.hold,
            limit=limit,
        )

    return asyncio.run(run())


@pytest.mark.parametrize("limit", [PART, 3 * PART, 100 * PART])
def test_parts_take_the_budget_in_order_and_give_it_back(tmp_path, limit):
    budget = _Recorded(limit)
    n, digest, verified = _copy(tmp_path, budget)
    assert (n, digest, verified) == (len(DATA), hashlib.sha256(DATA).hexdigest(), True)
    assert (tmp_path / "dst" / "big").read_bytes() == DATA
    assert budget.taken == [length for _, length in ranged_parts(len(DATA), PART)]
    assert budget.peak <= limit
    assert budget.budget.held == 0


def test_a_cancelled_copy_gives_back_every_share(tmp_path):
    budget = _Recorded(100 * PART, block_at=3)  # parts 0-2 hold budget, part 3 never gets any
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(DATA)
    src = LocalStore(tmp_path / "src", read_only=True)

    async def run() -> None:
        copy = asyncio.ensure_future(
            copy_ranged(
                src,
                "big",
                tmp_path / "dst",
                "big",
                len(DATA),
                part_bytes=PART,
                algorithm="sha256",
                hold=budget.hold,
                limit=asyncio.Semaphore(4),
            )
        )
        await budget.blocked.wait()
        copy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await copy

    asyncio.run(run())
    assert budget.taken == [PART] * 3
    assert budget.budget.held == 0
    assert not list((tmp_path / "dst").rglob("*.partial"))
    assert not (tmp_path / "dst" / "big").exists()


def test_a_failing_copy_gives_back_shares_of_tasks_that_never_ran(tmp_path):
    budget = _Recorded(100 * PART, fail_at=3)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(DATA)
    src = LocalStore(tmp_path / "src", read_only=True)

    async def run() -> int:
        with pytest.raises(RuntimeError, match="budget refused"):
            await copy_ranged(
                src,
                "big",
                tmp_path / "dst",
                "big",
                len(DATA),
                part_bytes=PART,
                algorithm="sha256",
                hold=budget.hold,
                limit=asyncio.Semaphore(4),
            )
        # given back by copy_ranged itself, not later by the loop finalizing abandoned
        # async generators (asyncio.run does that at the end)
        return budget.budget.held

    assert asyncio.run(run()) == 0
    assert budget.taken == [PART] * 3
    assert not list((tmp_path / "dst").rglob("*.partial"))


def test_hold_now_holds_until_closed():
    async def run() -> list[int]:
        budget = _ByteBudget(10)
        held = await hold_now(budget.hold, 7)
        seen = [budget.held]
        async with held:
            seen.append(budget.held)
        seen.append(budget.held)
        await held.aclose()  # closing again gives nothing back twice
        seen.append(budget.held)
        return seen

    assert asyncio.run(run()) == [7, 7, 0, 0]
