"""The default checks per sensor kind: the built-in rules of ``detectors/default_rules.yaml``.

:func:`default_checks` builds the checks a sensor of a given kind gets when
no rules file changes them (``detectors/rulebook.py``), with stable names
(alert events carry them as ``rule``). Nothing here is hand-written per
kind: the declaration in ``default_rules.yaml`` is the only source, and this
page documents what it declares:

water_level
    ``water_level.warning`` -- :class:`~detectors.levels.WarningLevels` from
    the sensor's registry levels, following the flood rows of China's warning
    criteria (docs: ``/work/shared/notes/field.md``):

    ========  =============================================  ==============
    severity  criterion                                      registry key
    ========  =============================================  ==============
    blue      near the warning level 警戒水位:                ``warning_m``
              ≥ warning − ``near_warning_m`` (0.3 m)          (``near_warning_m``)
    yellow    ≥ warning level 警戒水位                        ``warning_m``
    orange    ≥ guaranteed level 保证水位                     ``guaranteed_m``
    red       ≥ historical maximum                           ``historical_max_m``
    ========  =============================================  ==============

    Missing keys drop their severity (no levels at all: no level rule); a
    level not above the one below it is dropped too (bad registry data must
    not stop the other checks). Reset levels are 0.05 m below each level and
    a level must hold for 2 min before it fires or raises the severity (one
    wave or one noisy reading does not raise a flood warning).

    ``water_level.rate_of_rise`` (rising ≥ 0.3 m/h over 1 h, yellow),
    ``water_level.forecast`` (warning level predicted within 1 h, blue; only
    with ``warning_m``), ``water_level.flatline`` (60 identical readings,
    blue), ``water_level.stale``.

weather
    ``weather.rainstorm`` (CMA rainstorm signals on ``rain_mm``),
    ``weather.high_temperature`` (CMA high-temperature signals on ``temp_c``,
    China Standard Time days), ``weather.wind`` (typhoon-signal-like Beaufort
    levels on ``wind_ms``/``gust_ms``, held 30 min), ``weather.stale``.

traffic
    ``traffic.speed_anomaly`` -- :class:`~detectors.threshold.ScoreThreshold`
    around ``detectors.catalog.make_detector(DEFAULT_DETECTOR,
    field="speed_kmh")``, and ``traffic.stale``.

Stale checks expect a reading every ``interval_s`` (the registry's
``interval_s``, default 60 s) and fire after 5 missed intervals.
"""

from __future__ import annotations

import functools

from cityeye.kinds import kind_names
from cityeye.sensor_registry import Sensor
from detectors.base import Check
from detectors.rulebook import Rulebook, parse_rulebook

__all__ = ["default_checks", "builtin_rulebook"]


@functools.lru_cache(maxsize=1)
def builtin_rulebook() -> Rulebook:
    """The built-in rules alone (no rules file)."""
    return parse_rulebook(None)


def default_checks(kind: str, sensor_levels: dict[str, float] | None = None, interval_s: float = 60.0) -> list[Check]:
    """The built-in checks of a sensor of ``kind`` with its registry ``levels`` and reporting interval.

    Examples
    --------
    >>> [c.name for c in default_checks("water_level", {"warning_m": 4.5, "guaranteed_m": 5.2})]
    ['water_level.warning', 'water_level.rate_of_rise', 'water_level.forecast', 'water_level.flatline', 'water_level.stale']
    >>> default_checks("water_level", {"warning_m": 4.5, "guaranteed_m": 5.2})[0].levels
    {'blue': 4.2, 'yellow': 4.5, 'orange': 5.2}
    >>> [c.name for c in default_checks("weather", {})]
    ['weather.rainstorm', 'weather.high_temperature', 'weather.wind', 'weather.stale']
    """
    if kind not in kind_names():
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(kind_names())}")
    sensor = Sensor.model_construct(id="default", kind=kind, district="", name="", lat=0.0, lon=0.0,
                                    interval_s=float(interval_s), levels=dict(sensor_levels or {}))
    return builtin_rulebook().checks_for(sensor)
