"""The cases service's configuration file (``cityeye cases --cases-config cases.yaml``).

::

    database_url: sqlite:///var/cases/cases.db   # or postgresql+psycopg://cases:PW@db/cases
    org: cases/demo_org.yaml
    listen: {host: 127.0.0.1, port: 8090}
    consumer_group: cityeye-cases
    receivers:                                    # duty desks' channels (the alerting file's format)
      - {name: desk-district, type: cap, sender: cases@city.example, directory: var/cap/desk-district}
    policy: {group_window: 6h, rules: [...]}      # cases/policy.py
    sla: {tiers: {...}, remind_before: 15m}       # cases/sla.py

``CITYEYE_CASES_DATABASE_URL`` in the environment wins over ``database_url``
(so a password need not be in the file). The URL is a secret: it is never
logged or shown in an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from alerts.config import Duration, ReceiverConfig
from cases.errors import OrgError
from cases.org import parse_yaml_model
from cases.policy import PolicyConfig
from cases.sla import SlaConfig
from cityeye.yaml_source import read_config_text

__all__ = ["ListenConfig", "CasesConfig", "parse_cases_config", "load_cases_config", "DATABASE_URL_ENV"]

DATABASE_URL_ENV = "CITYEYE_CASES_DATABASE_URL"


class ListenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)


class CasesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: SecretStr = SecretStr("sqlite:///var/cases/cases.db")
    org: str
    listen: ListenConfig = ListenConfig()
    consumer_group: str = "cityeye-cases"
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    policy: PolicyConfig = PolicyConfig()
    sla: SlaConfig = SlaConfig()
    #: seconds between scans for due reminders and escalations
    tick_s: Duration = 1.0
    #: seconds between evaluation figures written to InfluxDB (0: never)
    evaluation_every_s: Duration = 60.0
    session_ttl_s: Duration = 12 * 3600.0


def parse_cases_config(text: str, source: str = "<cases config>", base: Path | None = None) -> CasesConfig:
    """Validate the file's text; relative ``org`` paths are taken from ``base``."""
    config, _ = parse_yaml_model(text, source, CasesConfig, "the cases config is a mapping")
    if base is not None and not Path(config.org).is_absolute() and not Path(config.org).exists():
        config.org = str(base / config.org)
    env_url = os.environ.get(DATABASE_URL_ENV)
    if env_url:
        config.database_url = SecretStr(env_url)
    names = [r.name for r in config.receivers]
    if len(set(names)) != len(names):
        raise OrgError(f"{source}: receivers: duplicate receiver name")
    return config


def load_cases_config(path: str | Path) -> CasesConfig:
    p = Path(path)
    return parse_cases_config(read_config_text(p, OrgError, "cases config"), str(p), base=p.resolve().parent)
