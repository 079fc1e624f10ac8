"""E-mail channel: SMTP (optionally STARTTLS or implicit TLS), plain text + HTML.

The message has ``Message-ID: <notification.id@cityeye>`` (the same for
every retry, so mail systems and people can spot duplicates), a subject
such as ``[CityEye] 橙色 FIRING: 2 alerts huangpu``, a plain-text body and
an HTML alternative (every value HTML-escaped). Each alert's line names
what its rule is (``water_level.stale (Sensor fault: no data)``) and quotes
value and threshold as the CAP message does, levels with the gauge's unit
and datum (:mod:`.rule_texts`). smtplib runs in a thread.

Config keys: ``name``, ``type: email``, ``host``, ``port`` (default 25),
``username``, ``password``, ``starttls`` (default false), ``ssl`` (implicit
TLS, default false), ``ca_file`` (CA bundle for the server certificate),
``sender``, ``recipients`` (list), ``subject_prefix``,
``timeout_s``.

Connection problems, timeouts and 4xx SMTP replies are retryable; 5xx
replies (recipient refused, authentication failed) are permanent.
"""

from __future__ import annotations

import asyncio
import html
import smtplib
import ssl
import unicodedata
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from alerts.notification import Notification, Notifier
from alerts.notifiers.common import ChannelConfig, scrubbed
from alerts.notifiers.rule_texts import event_name, quote, rule_text
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["EmailConfig", "EmailNotifier", "build_email"]

_COLOURS = {"blue": ("蓝色", "#1e6fd9"), "yellow": ("黄色", "#e0b000"), "orange": ("橙色", "#f07800"),
            "red": ("红色", "#d81e1e")}


class EmailConfig(ChannelConfig):
    type: Literal["email"] = "email"
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    ssl: bool = False
    #: CA bundle to verify the server with (default: the system's)
    ca_file: str | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    subject_prefix: str = "[CityEye]"
    timeout_s: float = Field(15.0, gt=0, le=300)

    @field_validator("sender", "recipients")
    @classmethod
    def _addresses(cls, value):
        for addr in [value] if isinstance(value, str) else value:
            if "@" not in addr or any(c in addr for c in "\r\n<>, "):
                raise ValueError(f"{addr[:80]!r} is not a plain e-mail address")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file {value!r} does not exist")
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> "EmailConfig":
        if self.ssl and self.starttls:
            raise ValueError("set at most one of ssl and starttls")
        return self


def _one_line(text: str) -> str:
    """``text`` as one header-safe line: control characters become spaces, runs collapse."""
    return " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in text).split())


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def build_email(notification: Notification, config: EmailConfig) -> EmailMessage:
    """The e-mail for ``notification`` (plain text with an HTML alternative)."""
    n = notification
    sev = n.highest_severity
    colour, hex_colour = _COLOURS.get(sev, (sev, "#555555"))
    where = " ".join(sorted({a.district for a in n.alerts}))
    subject = f"{config.subject_prefix} {colour} {n.status.upper()}: {n.summary or f'{len(n.alerts)} alert(s)'} {where}"
    msg = EmailMessage()
    msg["Subject"] = _one_line(subject)[:250]
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.recipients)
    msg["Date"] = formatdate(n.created_at, usegmt=True)
    msg["Message-ID"] = f"<{n.id}@cityeye>"
    msg["X-CityEye-Group"] = _one_line(n.group_key)[:200]

    lines = [f"{n.summary or 'CityEye alert notification'}", f"status: {n.status} ({n.reason}), version {n.version}", ""]
    rows = []
    for a in n.alerts:
        text = rule_text(a, "en-US")  # what the rule is, and its numbers with unit and datum (as in CAP)
        value, threshold = quote(a.value, text.value_as, a, "en-US"), quote(a.threshold, text.threshold_as, a, "en-US")
        rule = f"{a.rule} ({event_name(a, 'en-US')})"
        lines.append(f"- [{a.severity}/{a.state}] {a.district} {a.sensor_name or a.sensor_id} {rule}: "
                     f"{a.message} (value {value}, threshold {threshold}, since {_when(a.started_at)})")
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            a.severity, a.state, a.district, a.sensor_name or a.sensor_id, rule, a.message, value, threshold,
            _when(a.started_at))) + "</tr>")
    lines += ["", f"notification id: {n.id}"]
    msg.set_content("\n".join(lines))
    head = "".join(f"<th>{h}</th>" for h in ("severity", "state", "district", "sensor", "rule", "message",
                                              "value", "threshold", "since"))
    msg.add_alternative(
        f"<html><body><h2 style=\"color:{hex_colour}\">{html.escape(n.summary or 'CityEye alert notification')}</h2>"
        f"<p>status: {html.escape(n.status)} ({html.escape(n.reason)})</p>"
        f"<table border=\"1\" cellpadding=\"4\"><tr>{head}</tr>{''.join(rows)}</table>"
        f"<p style=\"color:#888\">notification id: {html.escape(n.id)}</p></body></html>",
        subtype="html",
    )
    return msg


class EmailNotifier(Notifier):
    """Sends each notification as one e-mail to the configured recipients."""

    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self.name = config.name

    async def send(self, notification: Notification) -> None:
        message = build_email(scrubbed(notification), self.config)
        await asyncio.to_thread(self._send_sync, message)

    def _send_sync(self, message: EmailMessage) -> None:
        c = self.config
        where = f"SMTP server {c.host}:{c.port}"
        try:
            context = ssl.create_default_context(cafile=c.ca_file) if (c.ssl or c.starttls) else None
            if c.ssl:
                smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=context)
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
            with smtp:
                if c.starttls:
                    smtp.starttls(context=context)
                if c.username:
                    smtp.login(c.username, c.password.get_secret_value() if c.password else "")
                refused = smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            error = RetryableDeliveryError if 400 <= exc.smtp_code < 500 else PermanentDeliveryError
            raise error(f"{where} answered {exc.smtp_code}: {text[:200]}", status=exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            error = RetryableDeliveryError if all(400 <= c < 500 for c in codes) else PermanentDeliveryError
            raise error(f"{where} refused every recipient (codes {codes})") from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise RetryableDeliveryError(f"{where} failed: {type(exc).__name__}") from None
        if refused:
            # some recipients took it; retrying would duplicate it for them
            codes = sorted({code for code, _ in refused.values()})
            raise PermanentDeliveryError(f"{where} refused {len(refused)} of {len(c.recipients)} recipients (codes {codes})")
