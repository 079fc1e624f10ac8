"""The cases service in the embedded stack (``cityeye run``): its config, demo users, what it prints.

:func:`prepare_cases` writes ``<workdir>/cases.yaml`` (the demo org and
policy with short SLA times, the database under ``<workdir>/cases/``, the
duty desks' CAP files under ``<workdir>/cap/``), migrates the database and
gives every person of the demo org a fresh random password, printed once
and written to ``<workdir>/cases-users.txt`` (mode 0600).
:class:`CaseFeed` prints the cases' timeline as it grows, and
:func:`print_evaluation` the 综合评价 figures at the end of the run.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import yaml

from cases.auth import Authenticator
from cases.casework import case_code
from cases.command import DEMO_CASES
from cases.config import load_cases_config
from cases.evaluation import evaluate
from cases.org import LEVEL_NAMES_ZH, Org, load_org
from cases.store import CaseStore, make_engine
from cityeye.sensor_registry import load_registry
from simulators import DEMO_REGISTRY

__all__ = ["prepare_cases", "CaseFeed", "print_evaluation", "cap_polygons_for_alerting"]


def cap_polygons_for_alerting() -> dict[str, str]:
    """The demo org's grid and district polygons by sensor id and district: CAP ``<area>`` of the alerts."""
    config = load_cases_config(DEMO_CASES)
    return load_org(config.org).cap_polygons(load_registry(DEMO_REGISTRY))


def prepare_cases(workdir: Path, port: int) -> tuple[Path, str]:
    """Write the cases config, migrate, set demo passwords; returns ``(config path, database url)``."""
    config = yaml.safe_load(DEMO_CASES.read_text(encoding="utf-8"))
    config["org"] = str(DEMO_CASES.parent / config["org"])
    db = workdir / "cases" / "cases.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    for old in db.parent.glob("cases.db*"):       # a new simulated world: keep the last run's cases aside
        old.replace(old.with_name(old.name.replace("cases.db", "previous-run.db")))
    url = f"sqlite:///{db}"
    config["database_url"] = url
    config["listen"] = {"host": "127.0.0.1", "port": port}
    for receiver in config["receivers"]:
        receiver["directory"] = str(workdir / "cap" / receiver["name"])
    path = workdir / "cases.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    org = load_org(config["org"])
    store = CaseStore.open(url)
    auth = Authenticator(store, org)
    lines = []
    for person in org.people.values():
        password = secrets.token_urlsafe(9)
        auth.set_password(person.username, password, time.time())
        lines.append(f"{person.username:12s} {password:14s} {person.role:13s} {person.unit:13s} "
                     f"{person.department or '':10s} {person.name}")
    store.engine.dispose()
    users = workdir / "cases-users.txt"
    users.touch(mode=0o600)
    users.chmod(0o600)
    users.write_text("# username password role unit department name (cityeye run, this run only)\n"
                     + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"cases   : console http://127.0.0.1:{port}/cases/  API /api/v1/cases  users (shown once, kept in "
          f"{users}, mode 0600):")
    for line in lines:
        print(f"          {line}")
    return path, url


class CaseFeed:
    """Prints new timeline rows of the cases database (polled by the embedded runner)."""

    def __init__(self, url: str, org: Org) -> None:
        self.store = CaseStore(make_engine(url))
        self.org = org
        self.last_id = 0

    def poll(self) -> list[str]:
        try:
            events = self.store.all_events(self.last_id)
        except Exception:  # noqa: BLE001 - the service may not have migrated yet; try next time
            return []
        out = []
        cases = {c["id"]: c for c in self.store.list_cases()} if events else {}
        for ev in events:
            self.last_id = ev["id"]
            line = self.describe(ev, cases.get(ev["case_id"]))
            if line:
                out.append(line)
        return out

    def describe(self, ev: dict[str, Any], case: dict[str, Any] | None) -> str | None:
        units, depts = self.org.units, self.org.departments
        code = case_code(ev["case_id"])
        if ev["action"] == "file" and case:
            return (f"CASE {code} FILED      {case['urgency']:6s} {units[case['unit']].name} "
                    f"({case['category']}) {case['title'][:80]}")
        if ev["action"] == "dispatch" and case:
            unit = units.get(case["dispatch_unit"] or "")
            dept = depts.get(case["department"] or "")
            return (f"CASE {code} DISPATCHED to {dept.name if dept else '?'} {dept.name_en if dept else ''} at "
                    f"{unit.name if unit else '?'} ({LEVEL_NAMES_ZH.get(unit.level, '') if unit else ''})")
        if ev["action"] == "escalate":
            to = units[ev["detail"]["to_unit"]]
            return (f"CASE {code} OVERDUE    stage {ev['detail']['stage']}: escalated to {to.name} "
                    f"{LEVEL_NAMES_ZH[to.level]} duty desk")
        if ev["action"] == "remind":
            return f"CASE {code} REMINDER   stage {ev['detail']['stage']} due soon"
        if ev["action"] in ("alert_firing", "alert_resolved") or ev["action"] == "note":
            return None
        return f"CASE {code} {ev['action'].upper():10s} by {ev['actor']}"


def print_evaluation(url: str, org: Org) -> None:
    """The run's 综合评价 figures per department and level."""
    store = CaseStore(make_engine(url))
    try:
        cases, events = store.list_cases(), store.all_events()
    finally:
        store.engine.dispose()
    print(f"cases   : {len(cases)} filed, {sum(c['escalation_level'] > 0 for c in cases)} escalated; "
          f"evaluation (综合评价):")
    for by in ("department", "level"):
        for row in evaluate(cases, events, org, by, time.time()):
            rate = row["on_time_accept"]
            print(f"          {by:10s} {row['name']:12s} cases {row['cases']:3d}  closed {row['closed']:3d}  "
                  f"on-time accept {'-' if rate is None else f'{rate:.0%}':>4s}  escalations {row['escalations']}")


