"""The default checks per sensor kind.

:func:`default_checks` builds the set of checks a sensor of a given kind gets
unless configured otherwise, with stable names (alert events carry them as
``rule``):

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

from cityeye.contracts import KINDS
from detectors.accumulation import RainfallAccumulation
from detectors.base import Check
from detectors.beaufort import WindBeaufort
from detectors.catalog import DEFAULT_DETECTOR, make_detector
from detectors.flatline import Flatline
from detectors.forecast import LevelForecast
from detectors.levels import WarningLevels
from detectors.rate import RateOfChange
from detectors.stale import StaleSensor
from detectors.sustained import SustainedCondition
from detectors.threshold import ScoreThreshold

__all__ = ["default_checks", "FLOOD_LEVEL_KEYS", "NEAR_WARNING_M"]

#: Registry level keys -> severity, lowest first (blue is derived from ``warning_m``).
FLOOD_LEVEL_KEYS: dict[str, str] = {
    "warning_m": "yellow",  # 警戒水位
    "guaranteed_m": "orange",  # 保证水位
    "historical_max_m": "red",
}
#: Blue is this far below the warning level unless the registry gives ``near_warning_m``.
NEAR_WARNING_M = 0.3


def _flood_levels(sensor_levels: dict[str, float]) -> dict[str, float]:
    raw: dict[str, float] = {}
    warning = sensor_levels.get("warning_m")
    if warning is not None:
        raw["blue"] = float(warning) - float(sensor_levels.get("near_warning_m", NEAR_WARNING_M))
    for key, sev in FLOOD_LEVEL_KEYS.items():
        if sensor_levels.get(key) is not None:
            raw[sev] = float(sensor_levels[key])
    levels: dict[str, float] = {}
    for sev in ("blue", "yellow", "orange", "red"):  # keep a strictly increasing ladder
        if sev in raw and (not levels or raw[sev] > max(levels.values())):
            levels[sev] = raw[sev]
    return levels


def default_checks(kind: str, sensor_levels: dict[str, float] | None = None, interval_s: float = 60.0) -> list[Check]:
    """The default checks of a sensor of ``kind`` with its registry ``levels``.

    Examples
    --------
    >>> [c.name for c in default_checks("water_level", {"warning_m": 4.5, "guaranteed_m": 5.2})]
    ['water_level.warning', 'water_level.rate_of_rise', 'water_level.forecast', 'water_level.flatline', 'water_level.stale']
    >>> default_checks("water_level", {"warning_m": 4.5, "guaranteed_m": 5.2})[0].levels
    {'blue': 4.2, 'yellow': 4.5, 'orange': 5.2}
    >>> [c.name for c in default_checks("weather", {})]
    ['weather.rainstorm', 'weather.high_temperature', 'weather.wind', 'weather.stale']
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    sensor_levels = dict(sensor_levels or {})
    checks: list[Check] = []
    if kind == "water_level":
        f = "level_m"
        levels = _flood_levels(sensor_levels)
        if levels:
            checks.append(
                WarningLevels(
                    field=f,
                    levels=levels,
                    hysteresis=0.05,
                    min_duration_s=120.0,
                    level_names={
                        "blue": "near-warning level",
                        "yellow": "warning level",
                        "orange": "guaranteed level",
                        "red": "historical maximum",
                    },
                    name="water_level.warning",
                )
            )
        checks.append(
            RateOfChange(field=f, rate_per_hour=0.3, window_s=3600.0, severity="yellow", name="water_level.rate_of_rise")
        )
        if sensor_levels.get("warning_m") is not None:
            checks.append(
                LevelForecast(
                    field=f,
                    level=float(sensor_levels["warning_m"]),
                    level_name="warning",
                    horizon_s=3600.0,
                    window_s=1800.0,
                    severity="blue",
                    name="water_level.forecast",
                )
            )
        checks.append(Flatline(field=f, repeats=60, tolerance=0.0, severity="blue", name="water_level.flatline"))
    elif kind == "weather":
        checks.append(RainfallAccumulation(field="rain_mm", name="weather.rainstorm"))
        checks.append(SustainedCondition(field="temp_c", utc_offset_h=8.0, name="weather.high_temperature"))
        checks.append(WindBeaufort(field="wind_ms", gust_field="gust_ms", hold_s=1800.0, name="weather.wind"))
    elif kind == "traffic":
        checks.append(
            ScoreThreshold(
                make_detector(DEFAULT_DETECTOR, field="speed_kmh"),
                threshold=0.9,
                severity="yellow",
                name="traffic.speed_anomaly",
                field="speed_kmh",
                min_count=60,
            )
        )
    checks.append(
        StaleSensor(expected_interval_s=float(interval_s), missed_intervals=5, severity="yellow", name=f"{kind}.stale")
    )
    return checks
