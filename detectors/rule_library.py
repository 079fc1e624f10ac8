"""The rule library: check types by name, their parameters, and building one check from a declaration.

A rules file declares checks by ``type`` (a key of :data:`CHECK_TYPES`) and
parameters. Every ``__init__`` argument of the check's class is a parameter
(its annotation is its type, checked with pydantic); nothing is hidden in
code. Three kinds of value need the sensor to resolve:

* **durations** (every parameter ending in ``_s``): a number of seconds, a
  time (``"90s"``, ``"2m"``, ``"1h"``, ``"1d"``), a number of readings
  (``"5 readings"``, turned into seconds with the sensor's reporting
  interval) or a list meaning the longest of them
  (``["30m", "5 readings"]``: at 1-minute sampling 30 min, at 15-minute
  sampling 75 min). So one default works at any sampling.
* **registry levels**: a number written ``"registry:warning_m"`` is the
  sensor's level of that name, ``"registry:near_warning_m or 0.3"`` has a
  fallback, and ``"registry:warning_m - registry:near_warning_m or 0.3"``
  subtracts (the blue near-warning level). If the sensor lacks a level with
  no fallback, the check is not built (a forecast needs a warning level) and
  :func:`build_check` says so; in a ``levels`` ladder only that severity is
  dropped, as is a level not above the one below it.
* **the anomaly model** of an ``anomaly`` check: ``model`` (a name from
  ``detectors.catalog``) and ``model_params``.

Hold durations (``min_duration_s``, ``hold_s``) shorter than one reporting
interval mean "one reading": a reading arrives only every interval, so
holding for less is holding for none. :func:`sampling_problems` names what
cannot work at a sensor's sampling (a forecast window that can never hold
its minimum number of points, a rate window shorter than one interval).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from detectors.accumulation import RainfallAccumulation
from detectors.base import Check
from detectors.beaufort import WindBeaufort
from detectors.flatline import Flatline
from detectors.forecast import LevelForecast
from detectors.levels import WarningLevels
from detectors.rate import RateOfChange
from detectors.stale import StaleSensor
from detectors.sustained import SustainedCondition
from detectors.threshold import ScoreThreshold

__all__ = ["CHECK_TYPES", "RuleError", "BuiltCheck", "parse_duration", "check_params", "validate_params",
           "build_check", "resolve_params", "make_check", "sampling_problems", "level_value", "REGISTRY_PREFIX",
           "HOLD_PARAMS"]

#: type name -> check class; an ``anomaly`` check wraps a detector from ``detectors.catalog``
CHECK_TYPES: dict[str, type[Check]] = {
    "warning_levels": WarningLevels,
    "rate_of_change": RateOfChange,
    "level_forecast": LevelForecast,
    "flatline": Flatline,
    "stale": StaleSensor,
    "rainfall_accumulation": RainfallAccumulation,
    "sustained_condition": SustainedCondition,
    "wind_beaufort": WindBeaufort,
    "anomaly": ScoreThreshold,
}
REGISTRY_PREFIX = "registry:"
#: holds shorter than one reporting interval mean one reading
HOLD_PARAMS = ("min_duration_s", "hold_s")
#: parameters set by the builder, never by a rules file
_BUILDER_PARAMS = {"name", "detector"}
_UNITS_S = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_COMPOUND = re.compile(r"^(?:\d+(?:\.\d+)?[dhms]){2,}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|r|readings?)\s*$")


class RuleError(ValueError):
    """A check declaration that cannot be built (the message names the parameter)."""


@dataclass
class BuiltCheck:
    """A check built for one sensor, with what the builder decided on the way."""

    check: Check | None
    #: resolved parameters (seconds, registry levels filled in)
    params: dict[str, Any] = field(default_factory=dict)
    #: why the check was not built, or what the sampling changed
    notes: list[str] = field(default_factory=list)


def parse_duration(value: Any, interval_s: float) -> float:
    """Seconds of a duration: a number, ``"2m"``, ``"5 readings"``, or a list (the longest).

    >>> parse_duration("2m", 60), parse_duration("5 readings", 900), parse_duration(["30m", "5 readings"], 900)
    (120.0, 4500.0, 4500.0)
    >>> parse_duration(90, 60), parse_duration("1h30m", 60)
    (90.0, 5400.0)
    """
    if isinstance(value, (list, tuple)):
        if not value:
            raise RuleError("an empty list is not a duration")
        return max(parse_duration(v, interval_s) for v in value)
    if isinstance(value, bool):
        raise RuleError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise RuleError(f"{value!r} is not a duration (seconds >= 0)")
        return float(value)
    text = str(value).strip()
    if _COMPOUND.match(text):  # "1h30m"
        return sum(float(n) * _UNITS_S[u] for n, u in _PART.findall(text))
    m = _DURATION.match(text)
    if not m:
        raise RuleError(f"{value!r} is not a duration: seconds, '90s', '2m', '1h30m', '1d' or 'N readings'")
    amount, unit = float(m.group(1)), m.group(2)
    if unit.startswith("r"):
        return amount * interval_s
    return amount * _UNITS_S[unit]


def check_params(type_name: str) -> dict[str, inspect.Parameter]:
    """The settable parameters of a check type, from its class's ``__init__``."""
    return dict(_check_params(type_name))


@functools.lru_cache(maxsize=None)  # a class's signature does not change; inspecting it cost ~0.2 ms a call
def _check_params(type_name: str) -> dict[str, inspect.Parameter]:
    cls = CHECK_TYPES[type_name]
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    out = {k: p for k, p in params.items() if k not in _BUILDER_PARAMS}
    if type_name == "anomaly":
        out["model"] = inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, default=None,
                                         annotation="str | None")
        out["model_params"] = inspect.Parameter("model_params", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                annotation="dict[str, Any] | None")
    return out


_MODELS: dict[str, type[BaseModel]] = {}


def _model(type_name: str) -> type[BaseModel]:
    """A pydantic model of the type's parameters (durations and registry levels accepted as text)."""
    if type_name not in _MODELS:
        cls = CHECK_TYPES[type_name]
        hints = typing.get_type_hints(cls.__init__, globalns=vars(inspect.getmodule(cls)))
        fields: dict[str, Any] = {}
        for pname, p in check_params(type_name).items():
            ann = hints.get(pname, Any) if pname not in ("model", "model_params") else (
                str | None if pname == "model" else dict[str, Any] | None)
            if pname.endswith("_s"):
                ann = Any  # a duration: checked by parse_duration
            elif pname in ("levels", "reset"):
                ann = dict[str, float | str] | None  # a ladder of numbers or registry levels
            elif ann in (float, float | None, int):
                ann = ann | str  # "registry:<level>" allowed
            fields[pname] = (ann, p.default if p.default is not inspect.Parameter.empty else ...)
        _MODELS[type_name] = create_model(f"{cls.__name__}Params", __config__=ConfigDict(extra="forbid"), **fields)
    return _MODELS[type_name]


def validate_params(type_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the type (unknown keys and bad types raise :class:`RuleError`)."""
    if type_name not in CHECK_TYPES:
        raise RuleError(f"unknown check type {type_name!r}; expected one of {', '.join(CHECK_TYPES)}")
    try:
        model = _model(type_name)(**params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise RuleError(f"{where}: {msg}") from None
    for key, value in params.items():
        if key.endswith("_s") and value is not None:
            try:
                parse_duration(value, 60.0)
            except RuleError as exc:
                raise RuleError(f"{key}: {exc}") from None
        elif isinstance(value, str) and _numeric(type_name, key):
            _check_level_spec(key, value)
        elif key == "levels" and isinstance(value, dict):
            for sev, spec in value.items():
                if isinstance(spec, str):
                    _check_level_spec(f"levels.{sev}", spec)
    return dict(params)


def _numeric(type_name: str, key: str) -> bool:
    ann = str(_check_params(type_name)[key].annotation)
    return ann.startswith(("float", "int"))


_TERM = r"(?:registry:[A-Za-z_][A-Za-z0-9_]*(?:\s+or\s+-?\d+(?:\.\d+)?)?|-?\d+(?:\.\d+)?)"
_LEVEL_SPEC = re.compile(rf"^\s*({_TERM})(?:\s*-\s*({_TERM}))?\s*$")


def _check_level_spec(key: str, spec: str) -> None:
    if not spec.startswith(REGISTRY_PREFIX) or not _LEVEL_SPEC.match(spec):
        raise RuleError(f"{key}: {spec!r} is not a number or 'registry:<level>' "
                        "(optionally 'or <number>', '- <number or registry level>')")


def _term(term: str, levels: dict[str, float]) -> float | None:
    if not term.startswith(REGISTRY_PREFIX):
        return float(term)
    key, _, fallback = term[len(REGISTRY_PREFIX):].partition(" or ")
    value = levels.get(key.strip())
    if value is None and fallback:
        return float(fallback)
    return None if value is None else float(value)


def level_value(spec: Any, levels: dict[str, float]) -> float | None:
    """A number, or a registry level expression resolved for one sensor (``None``: the sensor lacks it).

    >>> level_value("registry:warning_m - registry:near_warning_m or 0.3", {"warning_m": 4.5})
    4.2
    >>> level_value("registry:guaranteed_m", {"warning_m": 4.5}) is None
    True
    """
    if not isinstance(spec, str):
        return spec
    m = _LEVEL_SPEC.match(spec)
    first = _term(m.group(1), levels)
    second = _term(m.group(2), levels) if m.group(2) else 0.0
    if first is None or second is None:
        return None
    return round(first - second, 9)


def _resolve(type_name: str, params: dict[str, Any], levels: dict[str, float], interval_s: float,
             notes: list[str]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, str) and value.startswith(REGISTRY_PREFIX):
            resolved = level_value(value, levels)
            if resolved is None:
                notes.append(f"not built: {key} needs the sensor's registry level ({value})")
                return None
            value = resolved
        elif key == "levels" and isinstance(value, dict):
            value = _ladder(value, levels, notes)
            if not value:
                notes.append("not built: no level of the ladder is set for this sensor")
                return None
        elif key.endswith("_s") and value is not None:
            value = parse_duration(value, interval_s)
            if key in HOLD_PARAMS and 0 < value < interval_s:
                notes.append(f"{key} {value:g} s is shorter than one reporting interval ({interval_s:g} s): "
                             "one reading")
                value = 0.0
        out[key] = value
    return out


def _ladder(spec: dict[str, Any], levels: dict[str, float], notes: list[str]) -> dict[str, float]:
    """A strictly increasing ``{severity: level}`` ladder; missing or out-of-order levels are dropped."""
    from cityeye.contracts import SEVERITY_RANK

    ladder: dict[str, float] = {}
    for sev in sorted(spec, key=lambda s: SEVERITY_RANK.get(s, 99)):
        value = level_value(spec[sev], levels)
        if value is None:
            continue
        if ladder and value <= max(ladder.values()):
            notes.append(f"levels.{sev} {value:g} is not above the level below it: dropped")
            continue
        ladder[sev] = value
    return ladder


def sampling_problems(type_name: str, params: dict[str, Any], interval_s: float) -> list[str]:
    """What cannot work at ``interval_s`` with these resolved parameters (empty: all can)."""
    problems = []
    if type_name == "level_forecast":
        window, points = params.get("window_s", 1800.0), params.get("min_points", 5)
        if window < (points - 1) * interval_s:
            problems.append(f"window_s {window:g} s holds at most {int(window // interval_s) + 1} readings at "
                            f"{interval_s:g} s sampling but min_points is {points}: it can never fire")
    if type_name == "rate_of_change" and params.get("window_s", 3600.0) < interval_s:
        problems.append(f"window_s {params['window_s']:g} s is shorter than one reporting interval "
                        f"({interval_s:g} s): it never sees two readings")
    if type_name == "anomaly" and params.get("min_count", 50) * interval_s > 7 * 86400:
        problems.append(f"warm-up of {params['min_count']} readings takes "
                        f"{params['min_count'] * interval_s / 86400:.1f} days at {interval_s:g} s sampling")
    return problems


def build_check(name: str, type_name: str, params: dict[str, Any], levels: dict[str, float] | None = None,
                interval_s: float = 60.0) -> BuiltCheck:
    """The check ``name`` for a sensor with these registry ``levels`` and reporting interval.

    >>> b = build_check("water_level.forecast", "level_forecast",
    ...                 {"level": "registry:warning_m", "window_s": ["30m", "5 readings"]}, {"warning_m": 4.5}, 900)
    >>> b.check.level, b.check.window_s, b.notes
    (4.5, 4500.0, [])
    >>> build_check("water_level.forecast", "level_forecast", {"level": "registry:warning_m"}, {}, 60).notes
    ["not built: level needs the sensor's registry level (registry:warning_m)"]
    """
    params = validate_params(type_name, params)
    resolved, notes = resolve_params(type_name, params, levels, interval_s)
    if resolved is None:
        return BuiltCheck(None, {}, notes)
    return BuiltCheck(make_check(name, type_name, resolved), resolved, notes)


def resolve_params(type_name: str, params: dict[str, Any], levels: dict[str, float] | None = None,
                   interval_s: float = 60.0) -> tuple[dict[str, Any] | None, list[str]]:
    """Validated ``params`` resolved for one sensor's registry ``levels`` and reporting interval, and the
    builder's notes (``None``: the check cannot be built for this sensor, the notes say why).

    >>> resolve_params("level_forecast", {"level": "registry:warning_m", "window_s": "5 readings"}, {"warning_m": 4.5})
    ({'level': 4.5, 'window_s': 300.0}, [])
    """
    notes: list[str] = []
    resolved = _resolve(type_name, params, dict(levels or {}), interval_s, notes)
    if resolved is not None:
        notes += sampling_problems(type_name, resolved, interval_s)
    return resolved, notes


def make_check(name: str, type_name: str, resolved: dict[str, Any]) -> Check:
    """A new check ``name`` of ``type_name`` from resolved parameters (:func:`resolve_params`); an
    ``anomaly`` check gets a new model. Nothing of ``resolved`` is changed or kept by the check.
    """
    kwargs = _own_copy(resolved)
    if type_name == "anomaly":
        from detectors.catalog import DEFAULT_DETECTOR, make_detector

        model = kwargs.pop("model", None) or DEFAULT_DETECTOR
        model_params = dict(kwargs.pop("model_params", None) or {})
        model_params.setdefault("field", kwargs.get("field"))
        try:
            kwargs["detector"] = make_detector(model, **model_params)
        except (TypeError, ValueError, KeyError) as exc:
            raise RuleError(f"model {model!r}: {exc}") from None
    try:
        return CHECK_TYPES[type_name](**kwargs, name=name)
    except (TypeError, ValueError) as exc:
        raise RuleError(str(exc)) from None


def _own_copy(value: Any) -> Any:
    """``value`` with every dict and list in it copied (parameters are JSON-like: the rest is immutable)."""
    if isinstance(value, dict):
        return {k: _own_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own_copy(v) for v in value]
    return value
