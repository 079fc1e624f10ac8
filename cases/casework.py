"""What happens to cases: filing, actions, alert linking, SLA reminders and escalation.

Each operation is one store transaction (:meth:`CaseStore.transaction`): the
case row, its timeline rows and the notices to duty desks (outbox rows)
commit together. The time is an argument (``now``): the service passes its
clock, tests their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from alerts.notification import AlertSnapshot, Notification
from cases.auth import can_see
from cases.errors import BadRequestError, UnknownCaseError
from cases.metrics import ACTIONS_DONE
from cases.org import LEVEL_NAMES_ZH, Org, Person
from cases.policy import FilingPlan, PolicyConfig, decide
from cases.sla import Calculator
from cases.store import CASE_ALERTS, CASES, CaseStore
from cases.workflow import STAGE_OF_STATE, Step, actions_for, plan
from cityeye.contracts import AlertEvent

__all__ = ["Casework", "SYSTEM", "case_code", "parse_case_code"]

#: the actor of automatic filing, dispatch, reminders and escalations
SYSTEM = Person(username="system", name="系统 system", role="head_of_shift", unit="-")
_SYSTEM_ROLE = "system"
_SEVERITY_OF_TIER = {"urgent": "red", "high": "orange", "normal": "yellow"}


def case_code(case_id: int) -> str:
    """The case's public number, ``C-000012``."""
    return f"C-{case_id:06d}"


def parse_case_code(code: str) -> int:
    """``C-000012`` or ``12`` -> 12; :class:`UnknownCaseError` otherwise."""
    text = code.removeprefix("C-")
    if not text.isdigit():
        raise UnknownCaseError(f"no case {code[:40]!r}")
    return int(text)


@dataclass
class Casework:
    """The case operations over one store, org, SLA and filing policy."""

    store: CaseStore
    org: Org
    sla: Calculator
    policy: PolicyConfig

    # -- views
    def view(self, case: dict[str, Any], now: float, person: Person | None = None) -> dict[str, Any]:
        """The case as the API shows it (names of units, overdue, the person's actions)."""
        units, depts = self.org.units, self.org.departments
        out = dict(case)
        out["code"] = case_code(case["id"])
        for key in ("unit", "district", "dispatch_unit", "duty_unit"):
            unit = units.get(case.get(key) or "")
            out[f"{key}_name"] = unit.name if unit else ""
        duty = units.get(case["duty_unit"])
        out["duty_level"] = duty.level if duty else ""
        dept = depts.get(case.get("department") or "")
        out["department_name"] = dept.name if dept else ""
        out["overdue"] = bool(case.get("deadline_at") and now > case["deadline_at"])
        if person is not None:
            own = person.role == "handler" and case.get("department") == person.department
            out["actions"] = actions_for(case["state"], person.role, own)
        return out

    def board(self, person: Person, now: float, *, mine: bool = False, state: str | None = None,
              overdue_only: bool = False) -> list[dict[str, Any]]:
        """The cases ``person`` sees: overdue first, then by deadline, then newest."""
        rows = [c for c in self.store.list_cases() if can_see(self.org, person, c)]
        if state:
            rows = [c for c in rows if c["state"] == state]
        if mine and person.role != "handler":
            rows = [c for c in rows if person.unit in (c["duty_unit"], c["dispatch_unit"])
                    or c["created_by"] == person.username]
        views = [self.view(c, now, person) for c in rows]
        if overdue_only:
            views = [v for v in views if v["overdue"]]
        views.sort(key=lambda v: (v["state"] == "closed", not v["overdue"], v["deadline_at"] or float("inf"),
                                  -v["created_at"]))
        return views

    def detail(self, code: str, person: Person, now: float) -> dict[str, Any]:
        case = self._visible(parse_case_code(code), person)
        out = self.view(case, now, person)
        out["timeline"] = self.store.timeline(case["id"])
        out["alerts"] = self.store.alerts_of(case["id"])
        return out

    def _visible(self, case_id: int, person: Person) -> dict[str, Any]:
        case = self.store.get_case(case_id)
        if case is None or not can_see(self.org, person, case):
            raise UnknownCaseError(f"no case {case_code(case_id)} for {person.username}")
        return case

    # -- filing
    def file(self, filing: FilingPlan, person: Person, now: float, *, source: str, description: str = "",
             reporter: str = "", lat: float | None = None, lon: float | None = None,
             alert: AlertEvent | None = None) -> int:
        """File a case (and dispatch it at once when the plan says so); returns its id."""
        with self.store.transaction() as conn:
            return self._file(conn, filing, person, now, source=source, description=description,
                              reporter=reporter, lat=lat, lon=lon, alert=alert)

    def _file(self, conn: Connection, filing: FilingPlan, person: Person, now: float, *, source: str,
              description: str, reporter: str, lat: float | None, lon: float | None,
              alert: AlertEvent | None) -> int:
        deadline, remind = self.sla.due("dispatch", filing.urgency, filing.clock, now)
        values = dict(
            category=filing.category, title=filing.title or filing.category, description=description,
            source=source, reporter=reporter, lat=lat, lon=lon, unit=filing.unit, district=filing.district,
            group_key=filing.group_key, rule=filing.rule, urgency=filing.urgency, clock=filing.clock,
            state="filed", department=filing.department, dispatch_unit=filing.dispatch_unit,
            duty_unit=filing.unit, escalation_level=0, stage="dispatch", stage_started_at=now,
            deadline_at=deadline, escalate_at=deadline, remind_at=remind, reminded=False,
            created_by=person.username, created_at=now, updated_at=now, returns=0, reopens=0, version=1,
        )
        case_id = self.store.insert_case(conn, values)
        role = _SYSTEM_ROLE if person is SYSTEM else person.role
        self.store.add_event(conn, case_id, now, "file", person.username, role=role, to_state="filed",
                             detail={"rule": filing.rule, "source": source, "unit": filing.unit})
        if alert is not None:
            self._link(conn, case_id, alert, now)
        if filing.auto_dispatch and filing.department:
            case = self.store.lock_case(conn, case_id)
            assert case is not None
            request = {"department": filing.department, "unit": filing.dispatch_unit}
            self._apply(conn, case, "dispatch", SYSTEM, _SYSTEM_ROLE, request, now)
        return case_id

    def file_manual(self, filing: FilingPlan, person: Person, request: Mapping[str, Any], now: float) -> int:
        source = "citizen" if request.get("source") == "citizen" else "manual"
        if person.role not in ("duty_officer", "dispatcher", "supervisor", "head_of_shift"):
            raise BadRequestError(f"a {person.role} does not file cases")
        if not filing.title.strip():
            raise BadRequestError("a case needs a title")
        lat, lon = request.get("lat"), request.get("lon")
        case_id = self.file(filing, person, now, source=source, description=str(request.get("description", "")),
                            reporter=str(request.get("reporter", ""))[:200],
                            lat=float(lat) if lat is not None else None, lon=float(lon) if lon is not None else None)
        ACTIONS_DONE.labels("file").inc()
        return case_id

    # -- alerts
    def ingest_alert(self, event: AlertEvent, now: float, position: tuple[float, float] | None = None
                     ) -> tuple[str, int | None]:
        """Apply one alert event: ``("filed" | "linked" | "duplicate" | "ignored", case id)``."""
        with self.store.transaction() as conn:
            seen = conn.execute(select(CASE_ALERTS.c.case_id).where(CASE_ALERTS.c.event_id == event.event_id)).first()
            if seen:
                return "duplicate", seen[0]
            open_case = self._open_case_of_alert(conn, event.alert_id)
            filing = decide(event, self.policy, self.org, position)
            if filing is None:
                if open_case is None:
                    return "ignored", None
                self._link(conn, open_case, event, now)
                return "linked", open_case
            target = open_case or self._open_case_of_group(conn, filing.group_key, now)
            if target is not None:
                self._link(conn, target, event, now)
                return "linked", target
            lon, lat = position if position else (None, None)
            case_id = self._file(conn, filing, SYSTEM, now, source="alert", description=event.message,
                                 reporter=event.sensor_id, lat=lat, lon=lon, alert=event)
            return "filed", case_id

    @staticmethod
    def _open_case_of_alert(conn: Connection, alert_id: str) -> int | None:
        query = (select(CASES.c.id).join(CASE_ALERTS, CASE_ALERTS.c.case_id == CASES.c.id)
                 .where(CASE_ALERTS.c.alert_id == alert_id, CASES.c.state != "closed").order_by(CASES.c.id.desc()))
        row = conn.execute(query).first()
        return row[0] if row else None

    def _open_case_of_group(self, conn: Connection, key: str, now: float) -> int | None:
        query = (select(CASES.c.id).where(CASES.c.group_key == key, CASES.c.state != "closed",
                                          CASES.c.created_at >= now - self.policy.group_window)
                 .order_by(CASES.c.id.desc()))
        row = conn.execute(query).first()
        return row[0] if row else None

    def _link(self, conn: Connection, case_id: int, event: AlertEvent, now: float) -> None:
        conn.execute(insert(CASE_ALERTS).values(
            event_id=event.event_id, case_id=case_id, alert_id=event.alert_id, sensor_id=event.sensor_id,
            kind=event.kind, rule=event.rule, severity=event.severity, state=event.state, value=event.value,
            threshold=event.threshold, message=event.message, ts=event.updated_at))
        self.store.add_event(conn, case_id, now, f"alert_{event.state}", "system", role=_SYSTEM_ROLE,
                             detail={"alert_id": event.alert_id, "severity": event.severity, "value": event.value,
                                     "rule": event.rule, "sensor_id": event.sensor_id})

    # -- actions
    def act(self, code: str, action: str, person: Person, request: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Do ``action`` on the case as ``person``; returns the case's view."""
        case_id = parse_case_code(code)
        with self.store.transaction() as conn:
            case = self.store.lock_case(conn, case_id)
            if case is None or not can_see(self.org, person, case):
                raise UnknownCaseError(f"no case {case_code(case_id)} for {person.username}")
            case = self._apply(conn, case, action, person, person.role, request, now)
        ACTIONS_DONE.labels(action).inc()
        return self.view(case, now, person)

    def _apply(self, conn: Connection, case: dict[str, Any], action: str, person: Person, role: str,
               request: Mapping[str, Any], now: float) -> dict[str, Any]:
        own = case.get("department") == person.department
        req = dict(request)
        if action == "dispatch":
            req.setdefault("department", case.get("department"))
        step = plan(case["state"], action, role, req, case_id=case_code(case["id"]),
                    suspended_from=case.get("suspended_from"), own_department=own)
        changes = self._changes(case, step, req, now)
        on_time = stage_seconds = None
        if step.stage_left and case.get("deadline_at"):
            on_time = now <= case["deadline_at"]
            stage_seconds = now - (case.get("stage_started_at") or now)
        updated = self.store.update_case(conn, case, changes)
        self.store.pause("case-updated")
        evidence = [str(u)[:500] for u in (req.get("evidence") or []) if str(u).strip()]
        self.store.add_event(
            conn, case["id"], now, action, person.username, role=role, from_state=step.from_state,
            to_state=step.to_state, stage=step.stage_left, stage_seconds=stage_seconds, on_time=on_time,
            reason=str(req.get("reason") or "")[:2000], report=str(req.get("report") or req.get("note") or "")[:4000],
            evidence=evidence,
            detail={k: changes[k] for k in ("department", "dispatch_unit") if k in changes})
        return updated

    def _changes(self, case: dict[str, Any], step: Step, req: dict[str, Any], now: float) -> dict[str, Any]:
        changes: dict[str, Any] = {"state": step.to_state, "updated_at": now}
        if step.action == "dispatch":
            dept = self.org.departments.get(str(req["department"]))
            if dept is None:
                raise BadRequestError(f"unknown department {str(req['department'])[:40]!r}")
            unit = req.get("unit") or self.org.dispatch_level(dept, case["unit"]).code
            if unit not in self.org.units:
                raise BadRequestError(f"unknown unit {str(unit)[:40]!r}")
            changes.update(department=dept.code, dispatch_unit=unit)
        elif step.action == "return":
            changes["returns"] = case["returns"] + 1
        elif step.action == "reject":
            changes["reopens"] = case["reopens"] + 1
        elif step.action == "suspend":
            changes["suspended_from"] = step.from_state
        elif step.action == "resume":
            changes["suspended_from"] = None
        elif step.action == "close":
            changes["closed_at"] = now
        if step.to_state != step.from_state:
            stage = STAGE_OF_STATE[step.to_state]
            if stage:
                deadline, remind = self.sla.due(stage, case["urgency"], case["clock"], now)
                changes.update(stage=stage, stage_started_at=now, deadline_at=deadline, escalate_at=deadline,
                               remind_at=remind, reminded=False)
            else:
                changes.update(stage=None, stage_started_at=None, deadline_at=None, escalate_at=None,
                               remind_at=None, reminded=False)
        return changes

    # -- the clock
    def tick(self, now: float) -> list[tuple[str, int]]:
        """Send due reminders and escalate overdue cases; returns ``[(what, case id)]``."""
        done: list[tuple[str, int]] = []
        with self.store.transaction() as conn:
            for case in self.store.due_cases(conn, now):
                if case["escalate_at"] is not None and case["escalate_at"] <= now:
                    self._escalate(conn, case, now)
                    done.append(("escalated", case["id"]))
                elif case["remind_at"] is not None and case["remind_at"] <= now and not case["reminded"]:
                    self.store.update_case(conn, case, {"reminded": True})
                    self.store.add_event(conn, case["id"], now, "remind", "system", role=_SYSTEM_ROLE,
                                         stage=None, detail={"stage": case["stage"], "deadline_at": case["deadline_at"],
                                                             "unit": case["duty_unit"]})
                    self._notify(conn, case, case["duty_unit"], "reminder", now)
                    done.append(("reminded", case["id"]))
        return done

    def _escalate(self, conn: Connection, case: dict[str, Any], now: float) -> None:
        chain = self.org.chain(case["duty_unit"])
        target = chain[1] if len(chain) > 1 else chain[0]
        again = self.sla.duration(case["stage"], case["urgency"])
        changes = {"duty_unit": target.code, "escalation_level": case["escalation_level"] + (len(chain) > 1),
                   "escalate_at": now + again, "updated_at": now}
        updated = self.store.update_case(conn, case, changes)
        self.store.add_event(conn, case["id"], now, "escalate", "system", role=_SYSTEM_ROLE,
                             detail={"stage": case["stage"], "from_unit": case["duty_unit"], "to_unit": target.code,
                                     "to_level": target.level, "overdue_s": round(now - case["deadline_at"], 1)})
        self._notify(conn, updated, target.code, "escalation", now)

    def _notify(self, conn: Connection, case: dict[str, Any], unit_code: str, reason: str, now: float) -> None:
        unit = self.org.units[unit_code]
        for receiver in unit.duty_receivers:
            self.store.add_outbox(conn, receiver, self.notice(case, receiver, unit_code, reason, now).to_dict(), now)

    def notice(self, case: dict[str, Any], receiver: str, unit_code: str, reason: str, now: float) -> Notification:
        """The notification a duty desk gets about a case (a reminder or an escalation)."""
        code = case_code(case["id"])
        unit = self.org.units[unit_code]
        dept = self.org.departments.get(case.get("department") or "")
        stage = case.get("stage") or ""
        what = {"escalation": "超时升级 overdue, escalated to", "reminder": "即将超时 due soon at"}[reason]
        text = (f"工单 {code} {case['title']} — {what} {unit.name} {LEVEL_NAMES_ZH[unit.level]} "
                f"({unit.name_en or unit.code}); stage {stage}; "
                f"{dept.name if dept else '未派遣 not dispatched'}")
        district = self.org.units.get(case.get("district") or "")
        snapshot = AlertSnapshot(
            # the case's unit code as "sensor": CAP's <area> takes that unit's polygon (Org.cap_polygons)
            alert_id=f"case-{code}", sensor_id=case["unit"], kind="case",
            district=district.district if district else "", rule=f"case.{stage or 'open'}",
            severity=_SEVERITY_OF_TIER.get(case["urgency"], "yellow"), state="firing",
            started_at=case["created_at"], updated_at=now, value=None, threshold=None, message=text,
            sensor_name=f"{code} {case['title']}", lat=case.get("lat"), lon=case.get("lon"))
        return Notification(
            receiver=receiver, group_key=f"case|{code}", version=case["version"], status="firing", reason=reason,
            group_labels={"case": code, "unit": unit.code, "level": unit.level, "department": case.get("department") or ""},
            alerts=[snapshot], created_at=now, summary=text)
