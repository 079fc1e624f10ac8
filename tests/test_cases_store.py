"""The cases store: migrations match the code's tables; a process killed mid-transition leaves the case
consistent (nothing half-written) and the next process carries on; the org file's errors name the line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cases.casework import Casework
from cases.errors import OrgError
from cases.org import load_org, parse_org
from cases.policy import PolicyConfig, plan_manual
from cases.sla import Calculator, SlaConfig
from cases.store import METADATA, CaseStore
from tests.cases_helpers import T0, database_url, pg_server  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent
DEMO_ORG = REPO / "cases" / "demo_org.yaml"


def test_migrated_schema_is_the_code_s_schema(database_url):
    store = CaseStore.open(database_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    CaseStore.open(database_url)       # migrating again is a no-op
    store.engine.dispose()


#: the child: accepts the case as its handler and stops between the case row and its timeline row
_CHILD = textwrap.dedent("""
    import sys, time
    from cases.casework import Casework
    from cases.org import load_org
    from cases.policy import PolicyConfig
    from cases.sla import Calculator, SlaConfig
    from cases.store import CaseStore

    def pause(step):
        print("paused at", step, flush=True)
        time.sleep(120)

    org = load_org(sys.argv[2])
    store = CaseStore.open(sys.argv[1], pause=pause)
    work = Casework(store, org, Calculator(SlaConfig()), PolicyConfig())
    work.act("C-000001", "accept", org.people["citymgmt-wt"], {}, float(sys.argv[3]))
    print("not paused", flush=True)
""")


def test_a_transition_killed_midway_leaves_the_case_consistent(database_url):
    org = load_org(DEMO_ORG)
    store = CaseStore.open(database_url)
    work = Casework(store, org, Calculator(SlaConfig()), PolicyConfig())
    filing = plan_manual({"title": "垃圾满溢 overflowing bins", "category": "E-0102", "unit": "310101002-01"}, org)
    code = f"C-{work.file_manual(filing, org.people['hp-super'], {}, T0):06d}"
    work.act(code, "dispatch", org.people["hp-disp"], {"department": "citymgmt"}, T0 + 10)
    before = store.get_case(1)

    child = subprocess.Popen([sys.executable, "-c", _CHILD, database_url, str(DEMO_ORG), str(T0 + 20)],
                             stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "paused at case-updated", line
        os.kill(child.pid, signal.SIGKILL)          # the crash: case row updated, timeline row not yet written
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    after = store.get_case(1)                       # a fresh look after the crash: all or nothing
    assert after == before and after["state"] == "dispatched"
    assert [e["action"] for e in store.timeline(1)] == ["file", "dispatch"]
    store.engine.dispose()

    restarted = Casework(CaseStore.open(database_url), org, Calculator(SlaConfig()), PolicyConfig())
    view = restarted.act(code, "accept", org.people["citymgmt-wt"], {}, T0 + 30)
    assert (view["state"], view["version"]) == ("accepted", before["version"] + 1)
    assert [(e["action"], e["actor"]) for e in restarted.store.timeline(1)] == [
        ("file", "hp-super"), ("dispatch", "hp-disp"), ("accept", "citymgmt-wt")]
    restarted.store.engine.dispose()


@pytest.mark.parametrize("change, message", [
    (("parent: '310000'\n  district: huangpu", "parent: '999'\n  district: huangpu"),
     r"demo_org.yaml:\d+: units.1.parent: unknown parent unit '999'"),
    (("level: district", "level: province"), r"units.1.level: Input should be .city., .district."),
    (("[121.465, 31.19]\n      - [121.495", "[121.465, 31.19]\n      - [221.495"),
     r"units.1.boundary: position \[221.495, 31.19\] is not \[lon, lat\]"),
    (("unit: '310101', department: water", "unit: '310101', department: fire"),
     r"people.\d+.department: unknown department 'fire'"),
])
def test_org_errors_name_file_line_and_field(change, message):
    text = DEMO_ORG.read_text(encoding="utf-8")
    old, new = change
    assert old in text
    with pytest.raises(OrgError, match=message):
        parse_org(text.replace(old, new, 1), "demo_org.yaml")


def test_org_error_line_is_the_field_s_line():
    text = DEMO_ORG.read_text(encoding="utf-8").replace("level: district", "level: province", 1)
    with pytest.raises(OrgError) as err:
        parse_org(text, "demo_org.yaml")
    line = int(str(err.value).split(":")[1])
    assert text.splitlines()[line - 1].strip() == "level: province"


def test_sensors_are_placed_by_placement_then_polygon_then_district():
    org = load_org(DEMO_ORG)
    assert org.place("wl-huangpu-01", 121.4860, 31.2437, "huangpu").code == "310101002-01"   # point in polygon
    assert org.place("x", 121.470, 31.200, "huangpu").code == "310101"                       # district box only
    assert org.place("x", None, None, "minhang").code == "310112"                            # by district name
    assert org.place("x", 0.0, 0.0, "nowhere").code == "310000"
    org.placements["x"] = "310106013-01"
    assert org.place("x", 121.4860, 31.2437, "huangpu").code == "310106013-01"               # placement wins
    assert [u.code for u in org.chain("310101002-01-01")] == ["310101002-01-01", "310101002-01", "310101002",
                                                                "310101", "310000"]
