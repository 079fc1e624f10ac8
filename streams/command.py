"""``cityeye worker``: run the Faust detector worker, standalone or in-process.

Standalone (the same in-process worker, under :func:`cityeye.command.run_service`)::

    cityeye worker --config cityeye.yaml [--web-port 6066] [--loglevel info]

In-process (the embedded runner, tests), inside a running event loop::

    from streams.command import StreamsWorker
    worker = StreamsWorker(settings)          # or StreamsWorker(settings, web_port=...)
    await worker.start()                      # returns once the Faust app is started
    await worker.wait_ready(timeout=30)       # optional: partitions assigned, state restored
    ...
    await worker.stop()                       # graceful: snapshots state, commits, leaves the group

or ``async with StreamsWorker(settings): ...``, or ``await run_worker(settings,
stop_event)`` which runs until ``stop_event`` is set. In-process workers
install no signal handlers and leave logging and the garbage collector's
settings to the host process (only ``cityeye worker``, ``dedicated_process``,
tunes the collector).

Warm standby (the embedded broker rollover, launch/broker_rollover.py)::

    cityeye worker --config next.yaml --standby READY_FILE

imports everything and builds the app (the slow part of a start, seconds),
writes ``READY_FILE`` and waits, connected to nothing, for SIGUSR1: only then
does it start its metrics server and the Faust worker (topics, group join,
table recovery). SIGTERM before that stops it without connecting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from typing import Any, Awaitable, Callable

import faust
from aiokafka.errors import KafkaError

from cityeye.command import EXIT_OS_ERROR, go_or_now, run_service
from cityeye.config import Settings
from cityeye.errors import CityEyeError, ConfigError
from cityeye.kafka import ensure_topics
from cityeye.kinds import use_kinds_file
from cityeye.metrics import start_metrics
from cityeye.sensor_registry import SensorRegistry, load_settings_and_registry
from streams.app import StreamsApp, create_app
from streams.gc_tuning import tune_gc

__all__ = ["StreamsWorker", "run_worker", "COMMIT_SIGNAL", "add_arguments", "run"]

log = logging.getLogger(__name__)

#: the signal that makes a running worker commit its offsets now (run_worker, in the main thread)
COMMIT_SIGNAL = signal.SIGUSR2


class _InProcessWorker(faust.Worker):
    """A ``faust.Worker`` that leaves signals and the terminal to its host process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    def install_signal_handlers(self) -> None:
        pass


class StreamsWorker:
    """A Faust detector worker running inside the caller's event loop.

    ``app_kwargs`` go to :func:`streams.app.create_app` (``registry``,
    ``checks_factory``, ``batch_size``, ``tick_interval_s`` ...).
    ``dedicated_process``: the process runs nothing else, so the worker may
    freeze its heap and raise its collector's thresholds
    (:func:`streams.gc_tuning.tune_gc`); off by default, for in-process hosts
    (tests, backtests, a program embedding the worker) whose collector it leaves alone; it also builds each
    kind's checks once before it starts (:meth:`build`).
    """

    def __init__(self, settings: Settings, *, web_port: int | None = None, loglevel: str = "warning",
                 dedicated_process: bool = False, **app_kwargs: Any) -> None:
        self.settings = settings
        #: the process is this worker's alone (``cityeye worker``, a bench's child): :meth:`start` then
        #: tunes its garbage collector (streams/gc_tuning.py), which an in-process host keeps as it set it
        self.dedicated_process = dedicated_process
        self.web_port = web_port
        self.loglevel = loglevel
        self.app_kwargs = app_kwargs
        self.streams: StreamsApp | None = None
        self._worker: faust.Worker | None = None

    @property
    def app(self) -> faust.App:
        if self.streams is None:
            raise RuntimeError("worker not started")
        return self.streams.app

    def build(self) -> None:
        """Declare the settings' kinds and build the app (no connection yet); :meth:`start` does it if needed.

        A dedicated process also builds each kind's checks once (``SensorEngine.warm_up``: the detectors'
        libraries imported, their models made), so the first readings do not wait for it and the
        collector's freeze at :meth:`start` takes those objects in too."""
        if self.streams is None:
            use_kinds_file(self.settings.kinds)
            self.streams = create_app(self.settings, web_port=self.web_port, **self.app_kwargs)
            if self.dedicated_process:
                self.streams.runtime.engine.warm_up()

    async def start(self) -> None:
        """Build the app (unless :meth:`build` did), create the topics if missing and start the app."""
        self.build()
        await ensure_topics(self.settings.kafka)
        self._worker = _InProcessWorker(
            self.streams.app, loglevel=self.loglevel, override_logging=False, redirect_stdouts=False,
            quiet=True, daemon=False, loop=asyncio.get_running_loop(),
        )
        await self._worker.start()
        if self.dedicated_process:
            tune_gc()  # the start-up heap frozen, rarer collections (streams/gc_tuning.py)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the first rebalance and table recovery are complete."""
        await asyncio.wait_for(self.app.tables.recovery.completed.wait(), timeout)

    async def stop(self) -> None:
        """Stop gracefully: pending batches finish, state is snapshotted, offsets committed."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop()

    @property
    def crashed(self) -> BaseException | None:
        """The exception that crashed the Faust app, if any."""
        return getattr(self.app, "crash_reason", None) if self.streams else None

    async def __aenter__(self) -> "StreamsWorker":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_worker(settings: Settings, stop_event: asyncio.Event, *,
                     before_start: Callable[[StreamsWorker], Awaitable[bool]] | None = None, **kwargs: Any) -> None:
    """Run a :class:`StreamsWorker` until ``stop_event`` is set, then stop it.

    In the main thread, SIGHUP applies a changed rules file at once (it is
    also checked every ``settings.rules_check_s``) and SIGUSR2 commits the
    offsets of what is processed now, not at the next commit interval
    (~2.8 s; the broker rollover's drain asks for it). ``before_start``, if
    given, is awaited with the built, not yet started worker; it returns
    whether to start it (a warm standby waits there for its signal).

    Raises :class:`~cityeye.errors.CityEyeError` if the Faust app crashes.
    """
    worker = StreamsWorker(settings, **kwargs)
    if before_start is not None:
        worker.build()
        if not await before_start(worker):
            return
    await worker.start()
    loop = asyncio.get_running_loop()
    reload_on_hup = _in_main_thread()
    if reload_on_hup:  # SIGHUP: apply a changed rules file now (streams/live_rules.py)
        loop.add_signal_handler(signal.SIGHUP,
                                lambda: loop.create_task(worker.streams.runtime.reload_rules()))
        loop.add_signal_handler(COMMIT_SIGNAL, lambda: loop.create_task(worker.app.consumer.commit()))
    try:
        while not stop_event.is_set():
            if worker.crashed is not None:
                raise CityEyeError(f"stream worker crashed: {worker.crashed!r}")
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        if reload_on_hup:
            loop.remove_signal_handler(signal.SIGHUP)
            loop.remove_signal_handler(COMMIT_SIGNAL)
            signal.signal(COMMIT_SIGNAL, signal.SIG_IGN)  # a late request must not kill it (the default action)
        await worker.stop()


def _in_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    return threading.current_thread() is threading.main_thread()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (default: $CITYEYE_CONFIG)")
    parser.add_argument("--web-port", type=int, default=None,
                        help="serve Faust's web views on 127.0.0.1:PORT (default: no web server)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for Kafka when creating the topics at start (default: 30)")
    parser.add_argument("--standby", metavar="READY_FILE", default=None,
                        help="warm standby: build the app, write READY_FILE, and connect only on SIGUSR1 "
                             "(the embedded broker rollover)")
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"],
                        help="Faust log level (default: info)")


def run(args: argparse.Namespace) -> int:
    """Run the worker in the foreground until SIGINT/SIGTERM (then stop it gracefully)."""
    signal.signal(COMMIT_SIGNAL, signal.SIG_IGN)  # until the worker runs: a commit request is no reason to die

    async def serve(config: tuple[Settings, SensorRegistry], stop: asyncio.Event) -> int | None:
        settings, registry = config

        standby = go_or_now(args.standby, stop, lambda: start_metrics(settings.metrics, "worker"))
        try:
            await ensure_topics(settings.kafka, timeout=args.startup_timeout)
        except KafkaError as exc:
            log.error("cannot create the topics on Kafka at %s: %s", settings.kafka.bootstrap, exc)
            return EXIT_OS_ERROR
        try:
            await run_worker(settings, stop, registry=registry, web_port=args.web_port, loglevel=args.loglevel,
                             dedicated_process=True, before_start=standby)
        except ConfigError:
            raise  # exit 2
        except CityEyeError as exc:  # the Faust app crashed: not a configuration problem
            log.error("%s", exc)
            return EXIT_OS_ERROR
        return None

    return run_service("worker", lambda: load_settings_and_registry(args.config), serve)
