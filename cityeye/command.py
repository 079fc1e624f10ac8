"""One wrapper for every long-running ``cityeye`` subcommand.

Each service command (gateway, worker, sinks, dispatcher, simulate) does the
same three things around its own work: load its configuration, turning a
:class:`~cityeye.errors.CityEyeError` into a logged message and exit code 2
(never a traceback); run an asyncio ``main(stop)`` whose ``stop`` event is
set by SIGINT / SIGTERM; and report a start-up failure of the operating
system (a port taken, a directory not writable) as exit code 1::

    def run(args):
        return run_service("gateway", lambda: load_settings(args.config), serve)

    async def serve(settings, stop):      # returns once stop is set
        ...

Exit codes: 0 stopped cleanly, 1 the OS refused something, 2 configuration
or another CityEye error (the message names the file, line and field).
``main`` may also return an exit code of its own (``None`` means 0), e.g. a
run that ended because a part failed.

A warm standby (the embedded broker rollover, launch/broker_rollover.py)
gets ready, then calls :func:`wait_for_go`: it writes its ready file and
waits for SIGUSR1 (go on) or a stop (leave without having served).
:func:`exit_now` ends a process that has stopped cleanly without the
interpreter's teardown (the command line does it for the gateway).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable, NoReturn, TypeVar

from cityeye.errors import CityEyeError

__all__ = ["run_service", "stop_on_signals", "wait_for_go", "go_or_now", "exit_now", "GO_SIGNAL", "EXIT_OK", "EXIT_OS_ERROR", "EXIT_CONFIG_ERROR"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_OS_ERROR, EXIT_CONFIG_ERROR = 0, 1, 2

C = TypeVar("C")

#: the signal that tells a warm standby to go on (:func:`wait_for_go`)
GO_SIGNAL = signal.SIGUSR1


def stop_on_signals(stop: asyncio.Event, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Set ``stop`` when one of ``signals`` arrives (call inside the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)


async def wait_for_go(ready_file: Path, stop: asyncio.Event, go_signal: int = GO_SIGNAL) -> bool:
    """Write ``ready_file``, then wait for ``go_signal`` (True) or ``stop`` (False).

    The handler is installed before the file is written, so whoever waits
    for the file may signal at once; afterwards the signal is ignored (a
    second one must not kill the process, the signal's default action).
    """
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(go_signal, go.set)
    try:
        ready_file.write_text("ready\n", encoding="utf-8")
        log.info("standby: ready, waiting for signal %d to start", int(go_signal))
        either = [asyncio.ensure_future(go.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in either:
                waiter.cancel()
    finally:
        loop.remove_signal_handler(go_signal)
        signal.signal(go_signal, signal.SIG_IGN)
    if go.is_set() and not stop.is_set():
        log.info("standby: starting")
        return True
    return False


def go_or_now(ready_file: str | None, stop: asyncio.Event,
              on_go: Callable[[], object]) -> Callable[..., Awaitable[bool]] | None:
    """A service's start as a warm standby (``--standby READY_FILE``) or at once.

    Without ``ready_file``: calls ``on_go()`` now and returns ``None`` (no
    standby step). With it: returns the step the service awaits once it is
    built (whatever it is passed is ignored): it writes the file, waits for
    :data:`GO_SIGNAL` (then calls ``on_go()``, e.g. starting the metrics
    server whose port the process replaced held until then, and returns True)
    or for ``stop`` (False).
    """
    if not ready_file:
        on_go()
        return None

    async def standby(*_built: object) -> bool:
        if not await wait_for_go(Path(ready_file), stop):
            return False
        on_go()
        return True

    return standby


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` at once, once its service has stopped cleanly: the logs and the
    standard streams are flushed, the interpreter's teardown (freeing every module and object: 0.5-0.7 s
    after a gateway stopped in 15 ms, measured) is skipped. Never call it in a process that hosts
    anything else (tests)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def run_service(name: str, load: Callable[[], C], main: Callable[[C, asyncio.Event], Awaitable[int | None]]) -> int:
    """Load the configuration with ``load()``, then run ``main(config, stop)`` until a signal stops it.

    Returns the process exit code: ``main``'s own, if it returns one, else
    see the module docstring.
    """
    try:
        config = load()
    except CityEyeError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG_ERROR

    async def _main() -> int | None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        return await main(config, stop)

    try:
        code = asyncio.run(_main())
    except CityEyeError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG_ERROR
    except OSError as exc:  # e.g. a port is taken, state_dir is not writable
        log.error("%s could not start: %s", name, exc)
        return EXIT_OS_ERROR
    return EXIT_OK if code is None else int(code)
