"""SLA deadlines on natural and working hours over weekends, holidays and 调休 make-up days (pure)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cases.sla import Calculator, HolidayCalendar, SlaConfig, deadline

SH = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()


def local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, SH).replace(tzinfo=None)


@pytest.fixture(scope="module")
def calendar():
    return HolidayCalendar.load_default()


@pytest.mark.parametrize("start, hours, expected", [
    ((2026, 12, 3, 10, 0), 1, (2026, 12, 3, 11, 0)),        # inside the morning window
    ((2026, 12, 3, 11, 30), 1, (2026, 12, 3, 13, 30)),      # over the lunch break
    ((2026, 12, 4, 17, 0), 1, (2026, 12, 7, 9, 30)),        # Friday evening -> Monday morning
    ((2026, 12, 5, 10, 0), 1, (2026, 12, 7, 10, 0)),        # filed on a Saturday
    ((2026, 9, 30, 16, 0), 8, (2026, 10, 8, 16, 30)),       # 国庆 1-7 Oct skipped
    ((2026, 10, 9, 17, 0), 1, (2026, 10, 10, 9, 30)),       # Saturday 10 Oct is a 调休 working day
    ((2026, 2, 13, 17, 0), 1, (2026, 2, 14, 9, 30)),        # Saturday 14 Feb too, before 春节
    ((2026, 2, 14, 17, 0), 1, (2026, 2, 24, 9, 30)),        # 春节 15-23 Feb skipped
    ((2026, 12, 31, 17, 0), 1, (2027, 1, 4, 9, 30)),        # 元旦 2027
])
def test_working_hours_deadlines(calendar, start, hours, expected):
    assert local(deadline(at(*start), hours * 3600, "working", SlaConfig(), calendar)) == datetime(*expected)


def test_natural_hours_ignore_the_calendar(calendar):
    start = at(2026, 9, 30, 16, 0)
    assert deadline(start, 8 * 3600, "natural", SlaConfig(), calendar) == start + 8 * 3600


def test_calculator_tiers_and_reminders():
    calc = Calculator(SlaConfig(remind_before="15m"))
    start = at(2026, 12, 3, 10, 0)
    due, remind = calc.due("accept", "normal", "natural", start)
    assert (due - start, due - remind) == (3600, 900)
    due, remind = calc.due("accept", "urgent", "natural", start)
    assert (due - start, due - remind) == (600, 300)          # half the stage when that is shorter
    assert calc.duration("handle", "high") == 4 * 3600


def test_bad_sla_config_is_refused():
    with pytest.raises(ValueError, match="stages must be exactly"):
        SlaConfig(tiers={t: {"accept": 60} for t in ("urgent", "high", "normal")})
    with pytest.raises(ValueError, match="must end after it starts"):
        SlaConfig(working_hours=[("12:00", "09:00")])


def test_the_filing_policy_knows_the_contract_s_severities():
    from typing import get_args

    from cases.policy import Severity
    from cityeye.contracts import SEVERITIES

    assert get_args(Severity) == SEVERITIES
