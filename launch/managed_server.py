"""A server run as a child process on a free loopback port: the base of launch/servers.py's servers.

:func:`free_port` and :func:`wait_for_port` find and wait for ports;
:class:`ManagedServer` starts a command with its own work dir and log file,
waits until it is ready, retries on fresh ports when another process took
its port first, and stops it; :class:`HttpServer` is one with an HTTP API
from a Debian package's binary.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cityeye.errors import ServerStartError

__all__ = ["free_port", "wait_for_port", "ManagedServer", "HttpServer"]

log = logging.getLogger("launch.servers")  # the embedded servers' one logger, as before the split


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now, never the same one twice per process.

    (Two servers asking in a row could otherwise both be given a port the
    kernel has just released.)
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1", proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"process exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerStartError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


class ManagedServer:
    """A child server process with a temp dir, a log file and a port."""

    name = "server"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"cityeye-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        wait_for_port(self.port, proc=self.proc)
        self._still_running()

    def _still_running(self, grace_s: float = 0.2) -> None:
        """A connect can succeed against another process that holds our port while
        ours is still failing to bind: make sure our process did not exit."""
        time.sleep(grace_s)
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerStartError(f"process exited with code {self.proc.returncode} right after start")

    def wait_for_http(self, url: str, status: int, timeout: float = 30.0) -> None:
        """Wait until ``GET url`` answers ``status``; raise :class:`ServerStartError` if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerStartError(f"{self.name} exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == status:
                        return
            except OSError:
                time.sleep(0.1)
        raise ServerStartError(f"{self.name}: {url} did not answer {status} within {timeout:.0f} s")

    def pick_ports(self) -> None:
        """Choose fresh free ports (after losing a race for the current ones)."""
        self.port = free_port()

    def start(self, attempts: int = 3) -> "ManagedServer":
        """Start the server; retried on fresh ports if another process took ours first."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except ServerStartError as exc:
                if attempt == attempts or "address already in use" not in str(exc).lower():
                    raise
                log.warning("%s: port taken before it could bind; retrying on new ports", self.name)
                self.pick_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> "ManagedServer":
        cmd = self.command()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.workdir, start_new_session=True,
        )
        try:
            self.ready()
        except ServerStartError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise ServerStartError(f"{self.name} did not start ({exc}); log tail:\n{tail}") from None
        log.info("%s listening on 127.0.0.1:%d (log %s)", self.name, self.port, self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ManagedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class HttpServer(ManagedServer):
    """A server with an HTTP API at :attr:`url`, run from the Debian package ``package``'s ``name`` binary."""

    package = ""

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.name) is not None

    @classmethod
    def executable(cls) -> str:
        """The binary's path; raises :class:`ServerStartError` naming the package when it is missing."""
        exe = shutil.which(cls.name)
        if exe is None:
            raise ServerStartError(f"{cls.name} is not installed (apt-get install -y {cls.package})")
        return exe

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
