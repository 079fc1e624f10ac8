"""CAP channel: OASIS CAP 1.2 messages, POSTed over HTTP or written to a directory.

Config keys: ``name``, ``type: cap``, ``sender`` (no spaces, commas, ``<``
or ``&``), ``sender_name``, exactly one of ``url`` (POST with
``Content-Type: application/cap+xml``, ``Idempotency-Key`` = identifier,
optional ``secret`` for ``X-CityEye-Signature``, ``timeout_s``) or
``directory`` (``<identifier>.xml`` written atomically), ``languages``
(``zh-CN`` and/or ``en-US``), ``info_per`` (``alert`` or ``group``),
``radius_km`` (circle radius around a sensor), ``polygons`` (sensor id or
district -> ``"lat,lon lat,lon ..."``, a closed ring), ``web``, ``contact``,
``state_file``.

``references`` need the ``sent`` time of each earlier message. The
notifier records ``identifier -> sent`` of every message it delivered in a
small JSON file (``state_file``; in directory mode
``<directory>/.cap-sent.json`` by default) so that survives restarts. An
earlier message it has no record of (state lost) is referenced with the
group's first alert start as its ``sent``: deterministic, so a re-send
produces the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator, model_validator

from alerts.notification import Notification, Notifier
from alerts.notifiers.cap_message import CapOptions, build_cap, cap_time
from alerts.notifiers.common import ChannelConfig, HttpSession, check_http_url, scrubbed
from alerts.notifiers.http import SIGNATURE_HEADER, post, signature
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["CapConfig", "CapNotifier", "SentLog"]

_COORD = r"-?\d+(\.\d+)?,-?\d+(\.\d+)?"
_POLYGON = re.compile(rf"^{_COORD}( {_COORD}){{3,}}$")


class CapConfig(ChannelConfig):
    type: Literal["cap"] = "cap"
    sender: str = Field(min_length=1, max_length=200)
    sender_name: str = "CityEye"
    url: str | None = None
    directory: str | None = None
    secret: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)
    languages: list[Literal["zh-CN", "en-US"]] = Field(default_factory=lambda: ["zh-CN"], min_length=1)
    info_per: Literal["alert", "group"] = "alert"
    radius_km: float = Field(1.0, gt=0, le=1000)
    polygons: dict[str, str] = Field(default_factory=dict)
    web: str | None = None
    contact: str | None = None
    state_file: str | None = None

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if re.search(r"[\s,<&]", value):
            raise ValueError("must not contain spaces, commas, '<' or '&' (CAP 1.2 sender)")
        return value

    @field_validator("url", "web")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("polygons")
    @classmethod
    def _polygons(cls, value: dict[str, str]) -> dict[str, str]:
        for key, ring in value.items():
            points = ring.split()
            if not _POLYGON.match(ring) or points[0] != points[-1]:
                raise ValueError(f"polygon of {key!r} must be 4+ 'lat,lon' pairs, first and last the same")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> "CapConfig":
        if (self.url is None) == (self.directory is None):
            raise ValueError("set exactly one of url or directory")
        return self

    def options(self) -> CapOptions:
        return CapOptions(sender=self.sender, sender_name=self.sender_name, languages=tuple(dict.fromkeys(self.languages)),
                          info_per=self.info_per, radius_km=self.radius_km, polygons=dict(self.polygons),
                          web=self.web, contact=self.contact)


class SentLog:
    """``identifier -> sent`` of delivered messages, kept in a JSON file when given a path."""

    MAX_ENTRIES = 20000

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else None
        self._sent: dict[str, str] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._sent = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._sent = {}

    def get(self, identifier: str) -> str | None:
        return self._sent.get(identifier)

    def record(self, identifier: str, sent: str) -> None:
        self._sent[identifier] = sent
        while len(self._sent) > self.MAX_ENTRIES:
            self._sent.pop(next(iter(self._sent)))
        if self.path is not None:
            _atomic_write(self.path, json.dumps(self._sent, separators=(",", ":")).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CapNotifier(Notifier):
    """Delivers each notification as one CAP 1.2 ``<alert>``."""

    def __init__(self, config: CapConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self.options = config.options()
        state = config.state_file
        if state is None and config.directory is not None:
            state = str(Path(config.directory) / ".cap-sent.json")
        self.sent_log = SentLog(state)
        self._http = HttpSession(session)

    def render(self, notification: Notification) -> bytes:
        """The CAP XML this notifier sends for ``notification``."""
        notification = scrubbed(notification)
        first_start = min((a.started_at for a in notification.alerts), default=notification.created_at)

        def sent_of(identifier: str) -> str:
            return self.sent_log.get(identifier) or cap_time(first_start)

        return build_cap(notification, self.options, sent_of)

    async def send(self, notification: Notification) -> None:
        body = self.render(notification)
        if self.config.directory is not None:
            await self._write_file(notification.id, body)
        else:
            headers = {"Content-Type": "application/cap+xml; charset=utf-8", "Idempotency-Key": notification.id}
            if self.config.secret is not None:
                headers[SIGNATURE_HEADER] = signature(body, self.config.secret)
            await post(self._http.get(), self.config.url, body, headers, self.config.timeout_s)
        self.sent_log.record(notification.id, cap_time(notification.created_at))

    async def _write_file(self, identifier: str, body: bytes) -> None:
        path = Path(self.config.directory) / f"{identifier}.xml"
        try:
            await asyncio.to_thread(_atomic_write, path, body)
        except PermissionError as exc:
            raise PermanentDeliveryError(f"cannot write CAP file in {self.config.directory}: {exc.strerror}") from None
        except OSError as exc:
            raise RetryableDeliveryError(f"cannot write CAP file in {self.config.directory}: {exc.strerror}") from None

    async def close(self) -> None:
        await self._http.close()
