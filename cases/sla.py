"""SLA deadlines: per stage × urgency tier, on natural or working hours, with China's holiday calendar.

Pure: every function takes the time as an argument (epoch seconds). Working
hours run Monday to Friday inside :attr:`SlaConfig.working_hours`
(Asia/Shanghai), minus the statutory holidays and plus the make-up working
days (调休) of ``holidays_cn.yaml``.

>>> cal = HolidayCalendar.load_default()
>>> cal.is_working_day(date(2026, 10, 10)), cal.is_working_day(date(2026, 10, 5))   # 调休 Saturday, 国庆
(True, False)
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts.config import Duration

__all__ = ["STAGES", "Tier", "Clock", "TIERS", "CLOCKS", "SlaConfig", "HolidayCalendar", "deadline", "Calculator"]

STAGES = ("dispatch", "accept", "arrive", "handle", "verify")
Tier = Literal["urgent", "high", "normal"]
Clock = Literal["natural", "working"]
TIERS: tuple[str, ...] = get_args(Tier)
CLOCKS: tuple[str, ...] = get_args(Clock)
HOLIDAYS_FILE = Path(__file__).resolve().parent / "holidays_cn.yaml"
_DEFAULT_TIERS = {
    "normal": {"dispatch": 3600, "accept": 3600, "arrive": 7200, "handle": 8 * 3600, "verify": 4 * 3600},
    "high": {"dispatch": 1800, "accept": 1800, "arrive": 3600, "handle": 4 * 3600, "verify": 2 * 3600},
    "urgent": {"dispatch": 600, "accept": 600, "arrive": 1800, "handle": 2 * 3600, "verify": 3600},
}


class SlaConfig(BaseModel):
    """Stage durations per tier, the working day, reminders."""

    model_config = ConfigDict(extra="forbid")

    tiers: dict[str, dict[str, Duration]] = Field(default_factory=lambda: {k: dict(v) for k, v in _DEFAULT_TIERS.items()})
    #: a reminder goes out this long before a deadline (or at half the stage's time when that is shorter)
    remind_before: Duration = 900.0
    #: the working day as local [start, end] windows
    working_hours: list[tuple[str, str]] = Field(default_factory=lambda: [("09:00", "12:00"), ("13:00", "17:30")])
    timezone: str = "Asia/Shanghai"
    holidays_file: str | None = None

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for tier, stages in v.items():
            if tier not in TIERS:
                raise ValueError(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
            missing = [s for s in STAGES if s not in stages]
            bad = [s for s in stages if s not in STAGES]
            if missing or bad:
                raise ValueError(f"tier {tier}: stages must be exactly {', '.join(STAGES)}")
            if any(d <= 0 for d in stages.values()):
                raise ValueError(f"tier {tier}: stage durations must be positive")
        missing_tiers = [t for t in TIERS if t not in v]
        if missing_tiers:
            raise ValueError(f"tiers missing: {', '.join(missing_tiers)}")
        return v

    @model_validator(mode="after")
    def _hours(self) -> "SlaConfig":
        ZoneInfo(self.timezone)
        for start, end in self.working_hours:
            if time.fromisoformat(start) >= time.fromisoformat(end):
                raise ValueError(f"working_hours window {start}-{end} must end after it starts")
        return self


class HolidayCalendar:
    """Statutory holidays and make-up working days, by date."""

    def __init__(self, holidays: set[date], workdays: set[date]) -> None:
        self.holidays = holidays
        self.workdays = workdays

    @classmethod
    def load(cls, path: str | Path) -> "HolidayCalendar":
        data: dict[Any, Any] = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        holidays: set[date] = set()
        workdays: set[date] = set()
        for year in data.values():
            holidays.update(year.get("holidays") or [])
            workdays.update(year.get("workdays") or [])
        return cls(holidays, workdays)

    @classmethod
    def load_default(cls) -> "HolidayCalendar":
        return cls.load(HOLIDAYS_FILE)

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays


def _working_deadline(start: float, seconds: float, config: SlaConfig, calendar: HolidayCalendar) -> float:
    tz = ZoneInfo(config.timezone)
    windows = [(time.fromisoformat(a), time.fromisoformat(b)) for a, b in config.working_hours]
    now = datetime.fromtimestamp(start, tz)
    remaining = seconds
    day = now.date()
    for _ in range(3660):  # ten years of days: a calendar with no working day at all ends here
        if calendar.is_working_day(day):
            for a, b in windows:
                w_start = datetime.combine(day, a, tz).timestamp()
                w_end = datetime.combine(day, b, tz).timestamp()
                begin = max(w_start, start)
                if begin >= w_end:
                    continue
                if begin + remaining <= w_end:
                    return begin + remaining
                remaining -= w_end - begin
        day += timedelta(days=1)
    raise ValueError("no working time in the next ten years: check working_hours and the holiday calendar")


def deadline(start: float, seconds: float, clock: str, config: SlaConfig, calendar: HolidayCalendar) -> float:
    """When ``seconds`` of ``clock`` time (natural or working) have passed after ``start``."""
    if clock == "natural":
        return start + seconds
    if clock == "working":
        return _working_deadline(start, seconds, config, calendar)
    raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, not {clock!r}")


class Calculator:
    """The SLA of one configuration: a stage's deadline and reminder time for a case."""

    def __init__(self, config: SlaConfig, calendar: HolidayCalendar | None = None) -> None:
        self.config = config
        self.calendar = calendar or (HolidayCalendar.load(config.holidays_file) if config.holidays_file
                                     else HolidayCalendar.load_default())

    def duration(self, stage: str, tier: str) -> float:
        return float(self.config.tiers[tier][stage])

    def due(self, stage: str, tier: str, clock: str, start: float) -> tuple[float, float]:
        """``(deadline, remind_at)`` of ``stage`` started at ``start``."""
        seconds = self.duration(stage, tier)
        at = deadline(start, seconds, clock, self.config, self.calendar)
        ahead = min(self.config.remind_before, (at - start) / 2)
        return at, at - ahead
