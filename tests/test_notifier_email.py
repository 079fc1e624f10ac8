"""E-mail notifier against a real local aiosmtpd server (plain, STARTTLS + AUTH)."""

from __future__ import annotations

import email
import email.policy
import logging
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from alerts.notifiers import build_notifier
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError
from launch.servers import free_port
from tests.notify_helpers import sample_alert, sample_notification
from tests.tls_helpers import self_signed

PASSWORD = "smtp-pass-never-logged"


class Collect:
    def __init__(self, refuse: str | None = None) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse and address == self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"duty" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp():
    handler = Collect(refuse="nobody@ops.example.cn")
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def tls_files(tmp_path):
    return self_signed(tmp_path)


def email_config(port: int, **kw) -> dict:
    config = {"name": "duty-mail", "type": "email", "host": "127.0.0.1", "port": port,
              "sender": "cityeye@ops.example.cn", "recipients": ["duty@ops.example.cn", "chief@ops.example.cn"],
              "timeout_s": 5}
    config.update(kw)
    return config


async def test_email_arrives_with_subject_plain_text_and_html(smtp):
    controller, handler = smtp
    notifier = build_notifier(email_config(controller.port))
    n = sample_notification(alerts=[sample_alert(1), sample_alert(2, severity="red", message="<b>breach</b>")])
    await notifier.send(n)
    (msg,) = handler.messages
    assert sorted(handler.envelopes[0].rcpt_tos) == ["chief@ops.example.cn", "duty@ops.example.cn"]
    assert msg["Subject"] == "[CityEye] 红色 FIRING: 黄浦 flood warning huangpu"
    assert msg["Message-ID"] == f"<{n.id}@cityeye>"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "外滩水位站" in plain and "<b>breach</b>" in plain and n.id in plain
    assert "&lt;b&gt;breach&lt;/b&gt;" in html and "<b>breach</b>" not in html


async def test_starttls_with_auth(tmp_path, tls_files, caplog):
    caplog.set_level(logging.DEBUG)
    key, cert = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)
    controller.start()
    try:
        good = build_notifier(email_config(controller.port, starttls=True, ca_file=str(cert), username="duty",
                                           password=PASSWORD))
        await good.send(sample_notification())
        bad = build_notifier(email_config(controller.port, starttls=True, ca_file=str(cert), username="duty",
                                          password="wrong-" + PASSWORD))
        with pytest.raises(PermanentDeliveryError) as info:
            await bad.send(sample_notification())
        plain = build_notifier(email_config(controller.port))
        with pytest.raises(PermanentDeliveryError, match="530"):
            await plain.send(sample_notification())
    finally:
        controller.stop()
    assert len(handler.messages) == 1
    assert info.value.status == 535
    assert PASSWORD not in str(info.value) and PASSWORD not in caplog.text


async def test_refused_recipient_is_permanent(smtp):
    controller, handler = smtp
    notifier = build_notifier(email_config(controller.port, recipients=["nobody@ops.example.cn"]))
    with pytest.raises(PermanentDeliveryError, match="550"):
        await notifier.send(sample_notification())
    assert handler.messages == []


async def test_no_server_is_retryable():
    notifier = build_notifier(email_config(free_port()))
    with pytest.raises(RetryableDeliveryError):
        await notifier.send(sample_notification())


async def test_hostile_text_cannot_inject_headers(smtp):
    controller, handler = smtp
    notifier = build_notifier(email_config(controller.port))
    n = sample_notification(alerts=[sample_alert(1, district="d\r\nBcc: evil@x.cn", message="a\x00b \ud800")])
    n.summary = "s\r\nBcc: evil@x.cn\x00"
    await notifier.send(n)
    (msg,) = handler.messages
    assert msg["Bcc"] is None and sorted(handler.envelopes[0].rcpt_tos) == ["chief@ops.example.cn", "duty@ops.example.cn"]
    assert "\x00" not in msg["Subject"] and "Bcc: evil@x.cn" in msg["Subject"]
    assert "a\x00b \ufffd" in msg.get_body(("plain",)).get_content()


def test_each_alert_line_names_its_rule_and_quotes_levels_with_unit_and_datum():
    from alerts.notifiers.email import EmailConfig, build_email

    config = EmailConfig(name="mail", sender="cityeye@ops.example.cn", recipients=["duty@ops.example.cn"])
    level = sample_alert(1, rule="water_level.warning", check_type="warning_levels", value=4.62, threshold=4.5,
                         unit="m", datum="Wusong datum")
    stale = sample_alert(2, rule="water_level.stale", severity="yellow", value=1500.0, threshold=300.0, unit="m")
    msg = build_email(sample_notification(alerts=[level, stale]), config)
    plain = msg.get_body(("plain",)).get_content()
    assert "water_level.warning (Water level warning): " in plain
    assert "(value 4.62 m (Wusong datum), threshold 4.5 m (Wusong datum)," in plain
    assert "water_level.stale (Sensor fault: no data): " in plain and "(value 25 min, threshold 5 min," in plain
    assert "<td>water_level.stale (Sensor fault: no data)</td>" in msg.get_body(("html",)).get_content()
