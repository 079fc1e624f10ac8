"""docs/tuning.md: every ``cityeye`` command of its ``sh`` blocks runs and succeeds, in order."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

from launch.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "tuning.md"


def walkthrough_commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    return [shlex.split(line)[1:] for block in blocks for line in block.splitlines()
            if line.startswith("cityeye ")]


def test_every_walkthrough_command_runs(tmp_path, monkeypatch, capsys):
    commands = walkthrough_commands()
    verbs = [c[0] + " " + (c[1] if c[0] == "rules" else "") for c in commands]
    assert verbs == ["rules show", "rules check", "rules test", "backtest ", "backtest ", "backtest ", "tune ",
                     "rules check"]
    for name in ("docs", "detectors", "simulators"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CITYEYE_CONFIG", raising=False)
    for argv in commands:
        assert cli_main(argv + (["--quiet"] if argv[0] in ("backtest", "tune") else [])) == 0, argv
    out = capsys.readouterr().out
    assert "water_level.rate_of_rise" in out and "6 passed, 0 failed" in out
    river = json.loads((tmp_path / "backtest-river" / "result.json").read_text())
    assert river["summary"]["events"] == 1 and river["summary"]["detected"] == 1
    assert river["sensors"][0]["lead_min"][0] >= 30  # the flood was warned of half an hour ahead at least
    assert (tmp_path / "backtest-cmp" / "report.html").exists() and (tmp_path / "tune-out" / "recommended.yaml").exists()
    assert os.listdir(tmp_path / "backtest-sim")
