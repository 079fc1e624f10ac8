"""The monitoring that ships with CityEye, checked with the real tools.

* the pipeline's alert rules pass ``promtool check rules`` and their unit
  tests ``promtool test rules``; the compose ``prometheus.yml`` passes
  ``promtool check config`` and scrapes every CityEye service on the port
  its settings serve metrics on;
* every metric the processes register is documented in docs/metrics.md,
  and every documented one is registered;
* the Grafana provisioning points at the compose Prometheus and the
  dashboard's folder; every panel's query is valid PromQL (a real
  Prometheus parses it) and names only documented metrics.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from launch.prometheus_server import PrometheusServer

REPO = Path(__file__).resolve().parent.parent
PROM_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "cityeye-pipeline.json"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
#: the modules defining the processes' metrics
METRIC_MODULES = ["cityeye.metrics", "ingest.metrics", "streams.metrics", "alerts.runtime.metrics",
                  "alerts.sinks.metrics", "cases.metrics"]
#: series Prometheus itself provides
PROMETHEUS_SERIES = {"up", "ALERTS"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset"}


def promtool(*args: str) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: scripts/bootstrap test installs Debian's prometheus package"
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=PROM_DIR)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def documented_metrics() -> dict[str, str]:
    """``name -> type`` from the table of docs/metrics.md."""
    text = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    return {m[0]: m[1] for m in re.findall(r"^\| `(cityeye_\w+)` \| (\w+)", text, re.M)}


def registered_metrics() -> dict[str, str]:
    """``exposed name -> type`` of every CityEye metric the processes register."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    suffix = {"counter": "_total", "info": "_info"}
    return {m.name + suffix.get(m.type, ""): m.type for m in REGISTRY.collect() if m.name.startswith("cityeye_")}


def panel_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (label matchers, groupings and ranges removed)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = set()
    for match in re.finditer(r"\b([A-Za-z_:][\w:]*)\b(\s*\()?", bare):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS or re.fullmatch(r"\d\w*", word):
            continue
        names.add(re.sub(r"_(bucket|sum|count)$", "", word) if word.startswith("cityeye_") else word)
    return names


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "cityeye-rules.yml")
    assert "SUCCESS" in promtool("test", "rules", "cityeye-rules.test.yml")


def test_rules_use_documented_metrics_and_test_every_alert():
    rules = yaml.safe_load((PROM_DIR / "cityeye-rules.yml").read_text())["groups"][0]["rules"]
    documented = set(documented_metrics()) | PROMETHEUS_SERIES
    for rule in rules:
        assert metric_names(rule["expr"]) <= documented, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
    tests = yaml.safe_load((PROM_DIR / "cityeye-rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert tested == {rule["alert"] for rule in rules}


def test_every_registered_metric_is_documented_and_the_other_way_round():
    documented, registered = documented_metrics(), registered_metrics()
    assert set(documented) == set(registered)
    assert {name: kind.split()[0] for name, kind in documented.items()} == {
        name: "gauge" if kind == "info" else kind for name, kind in registered.items()}


def test_compose_prometheus_config_passes_promtool_and_scrapes_every_service():
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    prometheus = SERVICES["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if v.startswith("./")}
    config_path = next(arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file="))
    assert (REPO / mounts[config_path]).resolve() == PROM_DIR / "prometheus.yml"
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:  # mounted beside the config, as promtool read it here
        assert (REPO / mounts[str(Path(config_path).parent / rule_file)]).resolve() == PROM_DIR / rule_file
    scraped = {target for job in config["scrape_configs"] for sc in job["static_configs"] for target in sc["targets"]}
    env = COMPOSE["x-cityeye-env"]
    port = env["CITYEYE_METRICS__PORT"]
    assert env["CITYEYE_METRICS__HOST"] == "0.0.0.0"
    long_running = {name for name, s in SERVICES.items() if s.get("build") == "." and "profiles" not in s}
    assert long_running == {"gateway", "worker", "sinks", "dispatcher", "cases"}
    assert {f"{name}:{port}" for name in long_running} <= scraped
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {f"cityeye-{name}" for name in long_running} <= jobs  # the rules' up{job=~"cityeye-.*"}


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards():
    grafana = SERVICES["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert (REPO / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA_DIR / "provisioning"
    sources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in SERVICES and any(p.endswith(f"{port}:{port}") for p in SERVICES[host]["ports"])
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "cityeye.yml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert (REPO / mounts[provider["options"]["path"]]).resolve() == DASHBOARD.parent
    assert "GRAFANA_ADMIN_PASSWORD:?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_dashboard_covers_the_pipeline_with_documented_metrics():
    documented = set(documented_metrics()) | PROMETHEUS_SERIES
    used: set[str] = set()
    for title, expr in panel_exprs():
        names = metric_names(expr)
        assert names and names <= documented, (title, expr, names - documented)
        used |= names
    # pipeline rates, lag, latency, alerts by severity, notifications
    assert {"cityeye_ingest_readings_accepted_total", "cityeye_worker_readings_total", "cityeye_consumergroup_lag",
            "cityeye_ingest_latency_seconds", "cityeye_worker_latency_seconds", "cityeye_alert_events_total",
            "cityeye_notifications_total", "cityeye_notifications_failed_total"} <= used
    assert any("sum by (severity)" in expr and "cityeye_alert_events_total" in expr for _, expr in panel_exprs())


def test_metric_names_reads_selectors_not_labels_or_functions():
    expr = 'histogram_quantile(0.99, sum by (le, receiver) (rate(cityeye_x_seconds_bucket{job="up"}[5m]))) / up'
    assert metric_names(expr) == {"cityeye_x_seconds", "up"}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with PrometheusServer({}, workdir=tmp_path_factory.mktemp("prom")) as server:
        yield server


def test_every_dashboard_query_is_valid_promql(prometheus):
    for title, expr in panel_exprs():
        # Grafana substitutes $__rate_interval; a real Prometheus parses and runs the rest
        prometheus.query(expr.replace("$__rate_interval", "1m"))
    with pytest.raises(RuntimeError, match="bad_data"):
        prometheus.query("sum by (kind (rate(cityeye_worker_readings_total[1m]))")
