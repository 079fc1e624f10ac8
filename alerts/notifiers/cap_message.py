"""OASIS CAP 1.2 messages from notifications (pure: no I/O).

:func:`build_cap` returns the XML bytes of one ``<alert>``:

* ``identifier`` = notification id; ``sender``; ``sent`` = ``created_at``
  (``YYYY-MM-DDThh:mm:ss+00:00``, the schema forbids ``Z``); status
  ``Actual``; scope ``Public``; ``incidents`` = a stable id of the group;
* ``msgType``: ``Alert`` for the first message of a group, ``Update`` for
  later ones, ``Cancel`` when the group resolved; ``references`` lists
  ``sender,identifier,sent`` of each earlier message (``previous_ids``);
  a resolved group that was never announced is sent as an ``Alert`` with
  urgency ``Past`` and response ``AllClear``;
* one ``info`` per alert (or one per group) per language (``zh-CN``,
  ``en-US``): ``event``, ``headline`` and ``description`` name what the rule
  is (:mod:`alerts.notifiers.rule_texts`: warning level, rate of rise,
  forecast, rainstorm, high temperature, gale, anomaly, or a sensor fault:
  stale, flatline), levels quoted with the sensor's unit and datum
  (``4.62 m (Wusong datum)``); category from the kind (weather ``Met``;
  water level ``Env`` and ``Infra``; traffic ``Transport``), urgency
  ``Immediate`` for orange/red and ``Expected`` for blue/yellow (``Past``
  once resolved), severity blue→Minor, yellow→Moderate, orange→Severe,
  red→Extreme, certainty ``Observed`` (``Likely`` for forecast rules and a
  stuck reading, ``Possible`` for an anomaly score), parameters, and an
  ``area`` per sensor with a ``polygon`` when one is configured for the
  sensor or district and a ``circle`` ``"lat,lon radius_km"`` from the
  sensor location;
* a device fault (stale, flatline) is no warning of the hazard: category
  ``Infra``, urgency ``Unknown``, severity ``Minor``, response ``None``.

Characters XML cannot carry become U+FFFD. The result validates against ``cap-v1.2.xsd`` beside this module
(:data:`CAP_XSD`), the OASIS schema.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from alerts.model import AlertSnapshot
from alerts.notification import Notification
from alerts.notifiers.rule_texts import check_type_of, event_name, fill, quote, rule_text
from cityeye.contracts import SEVERITY_RANK

__all__ = ["CAP_NS", "CAP_XSD", "CapOptions", "build_cap", "cap_time", "SEVERITY_MAP", "CATEGORY_MAP",
           "DEVICE_CATEGORY"]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_XSD = Path(__file__).with_name("cap-v1.2.xsd")

SEVERITY_MAP = {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}
CATEGORY_MAP = {"weather": ("Met",), "water_level": ("Env", "Infra"), "traffic": ("Transport",)}
#: CAP category of a device-health rule (stale, flatline): the monitoring network is infrastructure
DEVICE_CATEGORY = ("Infra",)

_TEXT = {
    "zh-CN": {"resolved": "解除", "value": "观测值", "threshold": "阈值", "rule": "规则", "summary": "{n}条预警"},
    "en-US": {"resolved": "Cancelled:", "value": "observed", "threshold": "threshold", "rule": "rule",
              "summary": "{n} alerts"},
}


@dataclass
class CapOptions:
    """How messages are built (from the channel config)."""

    sender: str
    sender_name: str = ""
    languages: tuple[str, ...] = ("zh-CN",)
    info_per: str = "alert"
    radius_km: float = 1.0
    #: sensor id or district -> CAP polygon ("lat,lon lat,lon ... first point again")
    polygons: dict[str, str] = field(default_factory=dict)
    web: str | None = None
    contact: str | None = None


def cap_time(epoch_s: float) -> str:
    """CAP ``dateTime``: UTC with an explicit ``+00:00`` offset, whole seconds."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


#: characters XML 1.0 cannot carry at all (control characters, surrogates, U+FFFE/U+FFFF)
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = _NOT_XML.sub("\ufffd", text)
    return el


def _msg_type(n: Notification) -> str:
    if not n.previous_ids:
        return "Alert"
    return "Cancel" if n.status == "resolved" else "Update"


def _urgency(alert: AlertSnapshot, resolved: bool) -> str:
    if resolved or alert.state == "resolved":
        return "Past"
    if rule_text(alert, "en-US").device_fault:
        return "Unknown"
    return "Immediate" if alert.severity in ("orange", "red") else "Expected"


def _severity(alert: AlertSnapshot) -> str:
    return "Minor" if rule_text(alert, "en-US").device_fault else SEVERITY_MAP.get(alert.severity, "Unknown")


#: CAP certainty by the rule's profile (a hazard or device fault: Observed)
_CERTAINTY = {"forecast": "Likely", "anomaly": "Possible"}


def _certainty(alert: AlertSnapshot) -> str:
    if check_type_of(alert) == "flatline":
        return "Likely"  # a still river reads flat too
    profile = rule_text(alert, "en-US").profile
    if profile == "hazard" and "forecast" in alert.rule.lower():
        return "Likely"  # a forecast rule of a type without texts
    return _CERTAINTY.get(profile, "Observed")


def _categories(alert: AlertSnapshot) -> tuple[str, ...]:
    return DEVICE_CATEGORY if rule_text(alert, "en-US").device_fault else CATEGORY_MAP.get(alert.kind, ("Other",))


def _headline(lang: str, alert: AlertSnapshot, resolved: bool) -> str:
    text = fill(rule_text(alert, lang).headline, lang, alert)
    if not resolved:
        return text
    return f"{_TEXT[lang]['resolved']}{text}" if lang == "zh-CN" else f"{_TEXT[lang]['resolved']} {text}"


def _description(lang: str, alert: AlertSnapshot) -> str:
    t, rt = _TEXT[lang], rule_text(alert, lang)
    checks = fill(rt.checks, lang, alert)
    parts = [f"{t['rule']} {alert.rule}: {checks}" if alert.rule not in checks else checks]
    if alert.message:
        parts.append(alert.message)
    if alert.value is not None:
        parts.append(f"{t['value']} {quote(alert.value, rt.value_as, alert, lang)}")
    if alert.threshold is not None:
        parts.append(f"{t['threshold']} {quote(alert.threshold, rt.threshold_as, alert, lang)}")
    return "; ".join(parts)


def _area(info: ET.Element, alert: AlertSnapshot, opts: CapOptions) -> None:
    area = _sub(info, "area")
    _sub(area, "areaDesc", f"{alert.district} {alert.sensor_name or alert.sensor_id}".strip())
    polygon = opts.polygons.get(alert.sensor_id) or opts.polygons.get(alert.district)
    if polygon:
        _sub(area, "polygon", polygon)
    if alert.lat is not None and alert.lon is not None:
        _sub(area, "circle", f"{alert.lat:.6f},{alert.lon:.6f} {opts.radius_km:g}")


def _parameter(info: ET.Element, name: str, value: str) -> None:
    p = _sub(info, "parameter")
    _sub(p, "valueName", name)
    _sub(p, "value", value)


def _info(root: ET.Element, lang: str, alerts: list[AlertSnapshot], lead: AlertSnapshot, resolved: bool,
          opts: CapOptions, headline: str, description: str) -> None:
    info = _sub(root, "info")
    _sub(info, "language", lang)
    categories: list[str] = []
    for a in alerts:
        for c in _categories(a):
            if c not in categories:
                categories.append(c)
    for c in categories:
        _sub(info, "category", c)
    _sub(info, "event", event_name(lead, lang))
    if resolved:
        _sub(info, "responseType", "AllClear")
    elif all(rule_text(a, lang).device_fault for a in alerts):
        _sub(info, "responseType", "None")
    _sub(info, "urgency", _urgency(lead, resolved))
    _sub(info, "severity", _severity(lead))
    _sub(info, "certainty", _certainty(lead))
    code = _sub(info, "eventCode")
    _sub(code, "valueName", "CityEye:rule")
    _sub(code, "value", lead.rule)
    _sub(info, "effective", cap_time(lead.updated_at))
    _sub(info, "onset", cap_time(min(a.started_at for a in alerts)))
    if opts.sender_name:
        _sub(info, "senderName", opts.sender_name)
    _sub(info, "headline", headline)
    _sub(info, "description", description)
    if opts.web:
        _sub(info, "web", opts.web)
    if opts.contact:
        _sub(info, "contact", opts.contact)
    _parameter(info, "CityEye:alert_ids", " ".join(a.alert_id for a in alerts))
    _parameter(info, "CityEye:colour", lead.severity)
    for a in alerts:
        _area(info, a, opts)


def build_cap(notification: Notification, opts: CapOptions, sent_of: Callable[[str], str]) -> bytes:
    """The CAP 1.2 XML of ``notification``; ``sent_of(id)`` gives an earlier message's ``sent``."""
    n = notification
    resolved = n.status == "resolved"
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", n.id)
    _sub(root, "sender", opts.sender)
    _sub(root, "sent", cap_time(n.created_at))
    _sub(root, "status", "Actual")
    _sub(root, "msgType", _msg_type(n))
    _sub(root, "scope", "Public")
    if n.previous_ids:
        _sub(root, "references", " ".join(f"{opts.sender},{pid},{sent_of(pid)}" for pid in n.previous_ids))
    _sub(root, "incidents", hashlib.sha256(n.group_key.encode()).hexdigest()[:24])
    alerts = n.alerts
    if alerts:
        for lang in opts.languages:
            if opts.info_per == "group":
                lead = max(alerts, key=lambda a: (a.state == "firing", SEVERITY_RANK.get(a.severity, 0)))
                headline = n.summary or f"{_headline(lang, lead, resolved)} ({_TEXT[lang]['summary'].format(n=len(alerts))})"
                description = "\n".join(f"{a.sensor_name or a.sensor_id}: {_description(lang, a)}" for a in alerts)
                _info(root, lang, alerts, lead, resolved, opts, headline, description)
            else:
                for a in alerts:
                    _info(root, lang, [a], a, resolved, opts, _headline(lang, a, resolved or a.state == "resolved"),
                          _description(lang, a))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)

