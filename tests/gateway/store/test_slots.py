"""FairSlots: at most ``limit`` holders, waiters served in turns by owner, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.slots import READER, FairSlots


async def _hold(slots: FairSlots, owner: str, log: list[str], release: asyncio.Event) -> None:
    READER.set(owner)
    await slots.acquire()
    log.append(owner)
    await release.wait()
    slots.release()


async def test_turns_alternate_between_owners() -> None:
    slots = FairSlots(1)
    gate = asyncio.Event()
    log: list[str] = []
    first = asyncio.create_task(_hold(slots, "a", log, gate))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(_hold(slots, "a", log, gate)) for _ in range(4)]
    waiters.append(asyncio.create_task(_hold(slots, "b", log, gate)))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *waiters)
    assert log[:3] == ["a", "a", "b"]  # b's one read goes after a's next, not after all of a's


async def test_never_more_than_the_limit_and_cancelled_waiters_give_way() -> None:
    slots = FairSlots(2)
    held = 0
    most = 0

    async def use(owner: str) -> None:
        nonlocal held, most
        READER.set(owner)
        await slots.acquire()
        held += 1
        most = max(most, held)
        await asyncio.sleep(0.001)
        held -= 1
        slots.release()

    tasks = [asyncio.create_task(use(f"o{i % 3}")) for i in range(30)]
    await asyncio.sleep(0)
    for task in tasks[5:10]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 2
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 5
    assert slots.waiting == 0
    for _ in range(2):  # both slots are free again
        await asyncio.wait_for(slots.acquire(), 1)


async def test_a_slot_handed_to_a_waiter_that_gave_up_is_passed_on() -> None:
    slots = FairSlots(1)
    await slots.acquire()
    loser = asyncio.create_task(slots.acquire())
    winner = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to loser...
    loser.cancel()  # ...which gives up before running
    with pytest.raises(asyncio.CancelledError):
        await loser
    await asyncio.wait_for(winner, 1)  # the slot went on to the next waiter
