"""Waiting on what a test is about instead of a fixed sleep: a condition, a record on a topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from confluent_kafka import Message

from connectors.kafka import read_topic


async def until_on_topic(bootstrap: str, topic: str,
                         wanted: Callable[[list[Message]], bool], *,
                         timeout_s: float = 60.0) -> list[Message]:
    """Read `topic` (from its start, in a thread so the event loop goes on) until its records
    satisfy `wanted`; returns them. Fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        messages = await asyncio.to_thread(read_topic, bootstrap, topic, idle_s=0.5,
                                           timeout_s=5)
        if wanted(messages):
            return messages
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing wanted on {topic} within {timeout_s:.0f} s "
                                 f"({len(messages)} records)")
        await asyncio.sleep(0.2)


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition"
             ) -> None:
    """Poll `cond` every 20 ms until it holds; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)
