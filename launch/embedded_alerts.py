"""The alert events of an embedded stack (``cityeye run``, launch/embedded.py), read and printed as they fire.

:func:`follow_alerts` reads ``alerts.events`` from its start into a handler,
following the stack's broker rollovers; :func:`print_alerts` prints each
event (:func:`format_alert`) and the cases' steps, and stops the run when a
part dies.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cases.org import load_org
from cityeye.consume import Batches, consume
from cityeye.contracts import TOPIC_ALERTS, AlertEvent
from cityeye.kafka import make_consumer
from launch.embedded_cases import CaseFeed

if TYPE_CHECKING:
    from launch.embedded import EmbeddedStack

__all__ = ["format_alert", "follow_alerts", "print_alerts"]

_COLOURS = {"blue": "\033[34m", "yellow": "\033[33m", "orange": "\033[38;5;208m", "red": "\033[31m"}


def format_alert(event: AlertEvent, colour: bool = False) -> str:
    when = datetime.fromtimestamp(event.updated_at).strftime("%Y-%m-%d %H:%M")
    sev = event.severity.upper()
    if colour:
        sev = f"{_COLOURS.get(event.severity, '')}{sev}\033[0m"
    value = "" if event.value is None else f" value={event.value:g}"
    return (f"ALERT {event.state.upper():8s} {sev:6s} {when} {event.sensor_id} "
            f"({event.district}, {event.kind}) {event.rule}:{value} {event.message}")


async def follow_alerts(stack: EmbeddedStack, handle: Callable[[Batches], None], stop: asyncio.Event,
                        **consumer_overrides: Any) -> None:
    """Read ``alerts.events`` from its start (no group) into ``handle`` until ``stop``, following broker rollovers.

    After a rollover the reader starts again at the new broker's beginning:
    alert events are not carried over, so nothing is read twice.
    """
    while not stop.is_set():
        generation, moved = stack.generation, asyncio.Event()

        def watch(batches: Batches) -> None:
            handle(batches)
            if stack.generation != generation or stop.is_set():
                moved.set()

        consumer = make_consumer(stack.settings.kafka, TOPIC_ALERTS, group=None, **consumer_overrides)
        await consumer.start()
        try:
            await consume(consumer, watch, moved, timeout_ms=500, max_records=None, name="alert reader")
        finally:
            await consumer.stop()


async def print_alerts(stop: asyncio.Event, stack: EmbeddedStack, cases_org: Path) -> int:
    """Print alert events as they fire until ``stop`` (also set when a part dies); returns how many.

    With the stack's cases service, the steps of its cases too (``cases_org``: the org file it serves).
    """
    colour = sys.stdout.isatty()
    count = 0
    feed = CaseFeed(stack.cases_url, load_org(cases_org)) if stack.cases_url else None

    def show(batches: Batches) -> None:
        nonlocal count
        for records in batches.values():
            for record in records:
                try:
                    event = AlertEvent.from_json(record.value)
                except (ValueError, TypeError, KeyError) as exc:
                    print(f"unreadable alert event at offset {record.offset}: {exc}")
                    continue
                count += 1
                print(format_alert(event, colour), flush=True)
        for line in feed.poll() if feed else ():
            print(line, flush=True)
        dead = stack.dead_parts()
        if dead:
            print(f"part(s) exited unexpectedly: {', '.join(dead)}; see their logs in {stack.workdir}/")
            stop.set()

    await follow_alerts(stack, show, stop)
    return count
