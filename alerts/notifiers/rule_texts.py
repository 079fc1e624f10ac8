"""What each rule is called in a notification, per language, and how its numbers are quoted (pure).

Rules are configurable (``<kind>.<check name>``, any name), so a rule is
named by its *check type* in the rule library, which the stream worker sends
with every event (the ``check_type`` label, :attr:`AlertSnapshot.check_type`).
An alert without one (an event from an older worker) is recognised by the
shipped check names (``water_level.stale`` -> ``stale``); anything else gets
the kind's generic text with the rule's name.

:func:`rule_text` gives a :class:`RuleText`: the CAP ``event``, the headline
pattern, one sentence saying what the rule checks, how ``value`` and
``threshold`` are quoted, and the CAP profile (hazard, forecast or device
fault). :func:`quote` formats a number: a level in the sensor's unit with its
datum (``4.62 m (Wusong datum)``), a rate per hour, a duration, a count of
readings.

Device-health rules (``stale``, ``flatline``) are not a warning of the
kind's hazard: their headline says "sensor fault", and CAP gives them
category ``Infra``, urgency ``Unknown``, severity ``Minor`` and response
``None`` (see docs/alerting.md, "CAP texts per rule").
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.model import AlertSnapshot

__all__ = ["LANGUAGES", "RuleText", "rule_text", "check_type_of", "kind_name", "colour_name", "quote", "fill",
           "event_name", "SHIPPED_CHECK_NAMES"]

LANGUAGES = ("zh-CN", "en-US")

_KIND = {
    "zh-CN": {"water_level": "水位", "traffic": "交通", "weather": "气象", "air_quality": "空气质量",
              "manhole": "窨井"},
    "en-US": {"water_level": "water level", "traffic": "traffic", "weather": "weather",
              "air_quality": "air quality", "manhole": "manhole"},
}
_COLOUR = {
    "zh-CN": {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"},
    "en-US": {"blue": "Blue", "yellow": "Yellow", "orange": "Orange", "red": "Red"},
}

#: check names of the shipped rules (detectors/default_rules.yaml) -> their check type, for alerts without one
SHIPPED_CHECK_NAMES = {
    "warning": "warning_levels", "rate_of_rise": "rate_of_change", "forecast": "level_forecast",
    "flatline": "flatline", "stale": "stale", "rainstorm": "rainfall_accumulation",
    "high_temperature": "sustained_condition", "wind": "wind_beaufort", "speed_anomaly": "anomaly",
}


@dataclass(frozen=True)
class RuleText:
    """One rule's texts in one language; patterns take ``{kind}``, ``{Kind}``, ``{colour}``, ``{where}``,
    ``{rule}`` and ``{threshold}``.

    ``value_as`` / ``threshold_as`` say how the numbers are quoted (see :func:`quote`).
    ``profile``: ``hazard`` (a warning of the kind's hazard), ``forecast`` (a
    predicted one: certainty ``Likely``), ``anomaly`` (certainty ``Possible``)
    or ``device`` (a fault of the sensor itself).
    """

    event: str
    headline: str
    checks: str
    value_as: str = ""
    threshold_as: str = ""
    profile: str = "hazard"

    @property
    def device_fault(self) -> bool:
        return self.profile == "device"


def _texts(zh: tuple, en: tuple, value_as: str = "", threshold_as: str = "", profile: str = "hazard") -> dict:
    """``{language: RuleText}`` from ``(event, headline, checks)`` per language and what both share."""
    return {"zh-CN": RuleText(*zh, value_as, threshold_as, profile), "en-US": RuleText(*en, value_as, threshold_as,
                                                                                       profile)}


#: (check type, kind or "") -> texts per language; "" is any kind
_RULES: dict[tuple[str, str], dict[str, RuleText]] = {
    ("warning_levels", ""): _texts(
        ("{kind}预警", "{where}{colour}{kind}预警", "{kind}达到或超过预警线"),
        ("{Kind} warning", "{colour} {kind} warning at {where}", "{kind} at or above a warning level"),
        "level", "level"),
    ("rate_of_change", ""): _texts(
        ("{kind}快速上涨", "{where}{colour}{kind}快速上涨预警", "{kind}涨率达到阈值"),
        ("Rapid {kind} rise", "{colour} rapid {kind} rise warning at {where}",
         "{kind} rising at or faster than the rate threshold"),
        "rate", "rate"),
    ("level_forecast", ""): _texts(
        ("{kind}预报", "{where}{colour}{kind}预报：预计将达到{threshold}", "预计{kind}将在预报时效内达到预警线"),
        ("{Kind} forecast", "{colour} {kind} forecast at {where}: predicted to reach {threshold}",
         "{kind} predicted to reach a warning level within the forecast horizon"),
        "level", "level", "forecast"),
    ("flatline", ""): _texts(
        ("传感器故障：读数停滞", "{where}传感器故障：{kind}读数停滞", "传感器读数长时间不变（疑似故障），不是{kind}预警"),
        ("Sensor fault: stuck reading", "Sensor fault at {where}: {kind} reading stuck",
         "the sensor repeats the same reading (a stuck sensor), not a {kind} warning"),
        "level", "readings", "device"),
    ("stale", ""): _texts(
        ("传感器故障：数据中断", "{where}传感器故障：{kind}数据中断", "传感器无数据（设备或通信故障），不是{kind}预警"),
        ("Sensor fault: no data", "Sensor fault at {where}: no data from the {kind} sensor",
         "no data from the sensor (a device or communication fault), not a {kind} warning"),
        "duration", "duration", "device"),
    ("rainfall_accumulation", ""): _texts(
        ("暴雨预警", "{where}{colour}暴雨预警", "累计雨量达到暴雨预警标准"),
        ("Rainstorm warning", "{colour} rainstorm warning at {where}", "rain accumulated to a rainstorm criterion"),
        "mm", "mm"),
    ("sustained_condition", "weather"): _texts(
        ("高温预警", "{where}{colour}高温预警", "气温达到高温预警标准"),
        ("High temperature warning", "{colour} high temperature warning at {where}",
         "temperature at or above a high-temperature criterion"),
        "°C", "°C"),
    ("wind_beaufort", ""): _texts(
        ("大风预警", "{where}{colour}大风预警", "平均风或阵风达到大风预警标准"),
        ("Gale warning", "{colour} gale warning at {where}", "mean wind or gusts at a gale criterion"),
        "m/s", "m/s"),
    ("anomaly", ""): _texts(
        ("{kind}异常", "{where}{colour}{kind}异常", "{kind}读数异常（异常分数超过阈值）"),
        ("{Kind} anomaly", "{colour} {kind} anomaly at {where}", "unusual {kind} readings (anomaly score above the "
                                                                   "threshold)"),
        "", "", "anomaly"),
}
_GENERIC = _texts(
    ("{kind}预警（{rule}）", "{where}{colour}{kind}预警", "规则{rule}"),
    ("{Kind} warning ({rule})", "{colour} {kind} warning at {where}", "rule {rule}"))


def check_type_of(alert: AlertSnapshot) -> str:
    """The alert's check type: its own, or that of a shipped check name, or ``""``."""
    return alert.check_type or SHIPPED_CHECK_NAMES.get(alert.rule.rpartition(".")[2], "")


def rule_text(alert: AlertSnapshot, lang: str) -> RuleText:
    """The texts of the alert's rule in ``lang`` (``zh-CN`` or ``en-US``)."""
    check_type = check_type_of(alert)
    texts = _RULES.get((check_type, alert.kind)) or _RULES.get((check_type, "")) or _GENERIC
    return texts[lang]


def kind_name(kind: str, lang: str) -> str:
    """``water_level`` -> ``水位`` / ``water level``; an unknown kind with its underscores as spaces."""
    return _KIND[lang].get(kind, kind.replace("_", " "))


def colour_name(severity: str, lang: str) -> str:
    return _COLOUR[lang].get(severity, severity)


def _duration(seconds: float, lang: str) -> str:
    zh = lang == "zh-CN"
    if seconds < 120:
        return f"{seconds:.0f}秒" if zh else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}分钟" if zh else f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f}小时" if zh else f"{seconds / 3600:.1f} h"


def quote(number: float | None, how: str, alert: AlertSnapshot, lang: str) -> str:
    """``number`` as ``how`` says: ``level`` (the sensor's unit and datum), ``rate`` (unit per hour),
    ``duration`` (seconds), ``readings`` (a count), a literal unit, or ``""`` (the bare number):
    ``4.62 m (Wusong datum)``, ``0.35 m/h``, ``25 min``, ``60 readings``, ``38°C``.
    """
    if number is None:
        return ""
    if how == "duration":
        return _duration(number, lang)
    if how == "readings":
        return f"{number:g}次读数" if lang == "zh-CN" else f"{number:g} readings"
    if how == "rate":
        return f"{number:.2f} {alert.unit}/h" if alert.unit else f"{number:.2f}/h"
    unit = alert.unit if how == "level" else how
    text = f"{number:g} {unit}" if unit and unit != "°C" else f"{number:g}{unit}"
    if how == "level" and alert.datum:
        text += f"（{alert.datum}）" if lang == "zh-CN" else f" ({alert.datum})"
    return text


def fill(pattern: str, lang: str, alert: AlertSnapshot) -> str:
    """A :class:`RuleText` pattern filled in for ``alert``."""
    kind = kind_name(alert.kind, lang)
    return pattern.format(kind=kind, Kind=kind[:1].upper() + kind[1:], colour=colour_name(alert.severity, lang),
                          where=f"{alert.district} {alert.sensor_name or alert.sensor_id}", rule=alert.rule,
                          threshold=quote(alert.threshold, rule_text(alert, lang).threshold_as, alert, lang))


def event_name(alert: AlertSnapshot, lang: str) -> str:
    """What the alert's rule is, as a CAP ``event`` (``Sensor fault: no data``, ``Water level warning``)."""
    return fill(rule_text(alert, lang).event, lang, alert)
