"""Filing policy: which alert events file a case, how related alerts group, who gets it.

Pure: :func:`decide` takes an alert event and the policy and returns the
:class:`FilingPlan` (or ``None``: no case); the service applies it.

Rules are tried in order; the first whose ``kinds``/``rules``/``min_severity``
match the event files a case::

    policy:
      group_window: 6h            # same unit + kind within this: one case
      rules:
        - name: flooding
          kinds: [water_level]
          min_severity: yellow
          category: "E-0701"      # 事件-市容环境-积水 (GB/T 30428.2 style code)
          clock: natural
          auto_dispatch: true
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.config import Duration
from cases.org import Level, Org
from cases.sla import Clock, Tier
from cityeye.contracts import SEVERITY_RANK, AlertEvent

__all__ = ["FilingRule", "PolicyConfig", "FilingPlan", "decide", "plan_manual", "group_key"]

_DEFAULT_URGENCY = {"red": "urgent", "orange": "urgent", "yellow": "high", "blue": "normal"}
#: the alert severities (cityeye.contracts.SEVERITIES) as a type
Severity = Literal["blue", "yellow", "orange", "red"]


class FilingRule(BaseModel):
    """One filing rule (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kinds: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    min_severity: Severity = "yellow"
    category: str = "E-00"
    urgency: dict[Severity, Tier] = Field(default_factory=lambda: dict(_DEFAULT_URGENCY))
    clock: Clock = "natural"
    auto_dispatch: bool = True
    #: the department (else the one owning the rule / kind in the org)
    department: str | None = None
    #: dispatch no lower than this level (e.g. ``district`` for city-wide hazards)
    min_level: Level = "community"

    def matches(self, event: AlertEvent) -> bool:
        return ((not self.kinds or event.kind in self.kinds) and (not self.rules or event.rule in self.rules)
                and SEVERITY_RANK[event.severity] >= SEVERITY_RANK[self.min_severity])


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_window: Duration = 6 * 3600.0
    rules: list[FilingRule] = Field(default_factory=list)


@dataclass(frozen=True)
class FilingPlan:
    """A case to file (or to link an alert to, when one with ``group_key`` is open)."""

    rule: str
    category: str
    title: str
    urgency: str
    clock: str
    unit: str
    district: str
    group_key: str
    department: str | None
    dispatch_unit: str | None
    auto_dispatch: bool


def group_key(unit: str, kind: str) -> str:
    """Related alerts: the same unit (grid) and kind."""
    return f"{unit}|{kind}"


def _route(org: Org, unit: str, kind: str, rule: str, category: str, department: str | None,
           min_level: str) -> tuple[str | None, str | None]:
    dept = org.departments.get(department) if department else org.department_for(kind, rule, category)
    if dept is None:
        return None, None
    return dept.code, org.dispatch_level(dept, unit, min_level).code


def decide(event: AlertEvent, policy: PolicyConfig, org: Org, position: tuple[float, float] | None = None
           ) -> FilingPlan | None:
    """The case a firing alert event files, or ``None`` (no rule matches, or it is not firing)."""
    if event.state != "firing":
        return None
    rule = next((r for r in policy.rules if r.matches(event)), None)
    if rule is None:
        return None
    lon, lat = position if position else (None, None)
    unit = org.place(event.sensor_id, lon, lat, event.district)
    district = org.district_of(unit.code)
    dept, dispatch_unit = _route(org, unit.code, event.kind, event.rule, rule.category, rule.department,
                                 rule.min_level)
    name = event.labels.get("sensor_name") or event.sensor_id
    return FilingPlan(
        rule=rule.name, category=rule.category, title=f"{name}: {event.message}"[:200],
        urgency=rule.urgency.get(event.severity, "normal"), clock=rule.clock, unit=unit.code,
        district=district.code if district else "", group_key=group_key(unit.code, event.kind),
        department=dept, dispatch_unit=dispatch_unit, auto_dispatch=rule.auto_dispatch and dept is not None,
    )


def plan_manual(request: dict[str, Any], org: Org) -> FilingPlan:
    """A case filed by hand (an officer, a supervisor on patrol, a citizen's report): where and who.

    ``request`` has ``category``, ``title``, optionally ``unit`` (a grid code) or ``lat``/``lon``,
    ``urgency``, ``clock``, ``department``. Unknown units raise ``KeyError`` (the API says 400).
    """
    if request.get("unit"):
        unit = org.units[str(request["unit"])]
    elif request.get("lat") is not None and request.get("lon") is not None:
        unit = org.locate(float(request["lon"]), float(request["lat"])) or org.city
    else:
        unit = org.city
    district = org.district_of(unit.code)
    kind = str(request.get("kind") or "manual")
    dept, dispatch_unit = _route(org, unit.code, kind, "", str(request.get("category", "")),
                                 request.get("department"), "community")
    return FilingPlan(
        rule="manual", category=str(request.get("category") or "E-00"), title=str(request.get("title", ""))[:200],
        urgency=str(request.get("urgency") or "normal"), clock=str(request.get("clock") or "natural"),
        unit=unit.code, district=district.code if district else "", group_key="", department=dept,
        dispatch_unit=dispatch_unit, auto_dispatch=False,
    )
