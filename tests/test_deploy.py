"""docker-compose.yml and the Dockerfile can't run here: check their wiring by parsing them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from launch.cli import SUBCOMMANDS, main
from cityeye.config import load_settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CITYEYE_SERVICES = {name: s for name, s in SERVICES.items() if s.get("build") == "."}


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    # resolve ${VAR:-default} the way compose does with the variable unset
    return {k: re.sub(r"\$\{[^:}]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def test_infrastructure_services_present():
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert SERVICES["influxdb"]["image"].startswith("influxdb:2")
    init = SERVICES["influxdb"]["environment"]
    assert init["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("ORG", "BUCKET", "ADMIN_TOKEN"):
        assert init[f"DOCKER_INFLUXDB_INIT_{key}"]


def test_every_cityeye_stage_runs_from_the_one_image():
    commands = {s["command"][0] for s in CITYEYE_SERVICES.values()}
    assert {"gateway", "worker", "sinks", "dispatcher", "simulate"} <= commands
    assert commands <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(CITYEYE_SERVICES))
def test_service_settings_are_valid_and_point_at_compose_services(name, monkeypatch):
    service = CITYEYE_SERVICES[name]
    env = _env(service)
    for key in list(env):
        if key == "CITYEYE_REGISTRY":
            env.pop(key)  # a path inside the container; checked below
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka.bootstrap.split(":")[0] in SERVICES
    assert settings.kafka.profile == "kafka"
    assert settings.mqtt.host in SERVICES
    assert settings.influx.url.split("//")[1].split(":")[0] in SERVICES
    assert settings.influx.api == "v2" and settings.influx.token is not None
    # the registry path is a mounted file that exists in the repo
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if v.startswith("./")}
    registry = _env(service)["CITYEYE_REGISTRY"]
    assert (REPO / mounts[registry]).is_file()


def test_dependencies_exist_and_kafka_is_healthy_first():
    for name, service in CITYEYE_SERVICES.items():
        deps = service.get("depends_on", {})
        assert set(deps) <= set(SERVICES), name
    assert CITYEYE_SERVICES["worker"]["depends_on"]["kafka"]["condition"] == "service_healthy"


#: files the operator generates (cityeye devices export-acl), never in the repository
GENERATED = {"./deploy/secrets/mosquitto.passwd", "./deploy/secrets/mosquitto.acl",
             "./deploy/secrets/mqtt-credentials.yaml"}


def test_mounted_files_and_dockerfile_copies_exist():
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            if volume.startswith("./") and volume.split(":")[0] not in GENERATED:
                assert (REPO / volume.split(":")[0]).exists(), volume
    dockerfile = (REPO / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, re.M):
        for path in src.split():
            assert (REPO / path).exists(), path
    assert 'ENTRYPOINT ["cityeye"]' in dockerfile


def test_dispatcher_alerting_config_is_valid_and_exposed(monkeypatch):
    from alerts.config import load_alerting_config

    service = SERVICES["dispatcher"]
    command = service["command"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"] if v.startswith("./")}
    alerting_path = REPO / mounts[command[command.index("--alerting") + 1]]
    env = service["environment"]
    for key in ("CITYEYE_API_HOST", "CITYEYE_API_PORT"):
        monkeypatch.setenv(key, str(env[key]))
    monkeypatch.setenv("CITYEYE_API_TOKEN", "compose-test-token")
    cfg = load_alerting_config(alerting_path)
    assert cfg.api.host == "0.0.0.0"
    assert f"127.0.0.1:{cfg.api.port}:{cfg.api.port}" in service["ports"]  # behind a TLS proxy
    assert cfg.api.token is not None
    # the token must come from the environment, never from the mounted file
    assert "token" not in (cfg_text := alerting_path.read_text()).split("api:")[1]
    assert "${CITYEYE_API_TOKEN:?" in str(env["CITYEYE_API_TOKEN"]) and cfg_text
    # CAP files land on the dispatcher's persistent volume
    state = next(v.split(":")[1] for v in service["volumes"] if v.startswith("dispatcher-state:"))
    assert all(r.directory.startswith(state) for r in cfg.receivers if getattr(r, "directory", None))


def test_no_default_secrets_every_secret_is_required():
    """A password or token is ``${VAR:?message}``: compose refuses to start without it, never a default."""
    secret_keys = re.compile(r"PASSWORD|TOKEN|SECRET", re.I)
    seen = 0
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if secret_keys.search(key) and value:
                seen += 1
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}.{key} = {value!r}"
    assert seen >= 5
    assert "change-me" not in (REPO / "docker-compose.yml").read_text()


def test_only_the_ports_users_need_are_published():
    published = {name: service.get("ports", []) for name, service in SERVICES.items() if service.get("ports")}
    assert published.pop("mosquitto") == ["1883:1883"]  # the devices
    # plain HTTP (and Prometheus without any login): the host's loopback only, TLS at a reverse proxy
    assert published == {"dispatcher": ["127.0.0.1:8080:8080"], "grafana": ["127.0.0.1:3000:3000"],
                         "prometheus": ["127.0.0.1:9090:9090"], "cases": ["127.0.0.1:8090:8090"]}


def test_mosquitto_needs_accounts_and_the_gateway_has_one(tmp_path):
    conf = (REPO / "deploy" / "mosquitto.conf").read_text()
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert settings["allow_anonymous"] == "false" and settings["use_username_as_clientid"] == "true"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["mosquitto"]["volumes"] if v.startswith("./")}
    assert mounts[settings["password_file"]] in GENERATED and mounts[settings["acl_file"]] in GENERATED
    gateway = SERVICES["gateway"]["environment"]
    assert gateway["CITYEYE_MQTT__USERNAME"] == "cityeye-gateway"
    assert str(gateway["CITYEYE_MQTT__PASSWORD"]).startswith("${CITYEYE_MQTT_GATEWAY_PASSWORD:?")
    assert "/deploy/secrets/" in (REPO / ".gitignore").read_text().splitlines()
    # the files the compose file mounts are what the documented command writes
    assert main(["devices", "export-acl", "--credentials", str(tmp_path / "mqtt-credentials.yaml"),
                 "--out", str(tmp_path)]) == 0
    assert {f"./deploy/secrets/{p.name}" for p in tmp_path.iterdir()} == GENERATED


def test_cases_service_runs_on_the_compose_postgres(tmp_path):
    """The cases service's database is the compose PostgreSQL, its password a required variable; its file is valid."""
    from cases.config import parse_cases_config

    assert SERVICES["postgres"]["image"].startswith("postgres:15")
    assert ":?" in SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]
    cases = SERVICES["cases"]
    url = cases["environment"]["CITYEYE_CASES_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://cases:${CITYEYE_CASES_DB_PASSWORD:?") and "@postgres:5432/cases" in url
    assert cases["depends_on"]["postgres"]["condition"] == "service_healthy"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in cases["volumes"] if v.startswith("./")}
    config = parse_cases_config((REPO / mounts["/etc/cityeye/cases.yaml"]).read_text(), "deploy/cases.yaml")
    assert config.org == "/etc/cityeye/org.yaml" and (REPO / mounts[config.org]).is_file()
    assert config.listen.port == int(cases["ports"][0].split(":")[1])
    assert {r.name for r in config.receivers} >= {"desk-city", "desk-district", "desk-street", "desk-grid"}
