"""The dispatcher's alerting configuration: one YAML file, validated at load.

Sections (see ``alerts/example-alerting.yaml`` and docs/alerting.md)::

    receivers:        [{name, type, ...}]   # each passed to alerts.notifiers.build_notifier
    route:            routing tree (receiver, match, match_re, continue, group_by,
                      group_wait, group_interval, repeat_interval, escalation, routes)
    inhibit_rules:    [{source_matchers, target_matchers, equal}]
    maintenance_windows: [{name, matchers, weekdays, start, end, timezone}]
    timings:          keep_firing_for, flapping low/high/history, escalate_after,
                      reminder_every, escalate_severities
    delivery:         max_attempts, backoff_initial, backoff_max, redeliver, redelivery_max, concurrency
    api:              host, port, token
    sharding:         enabled, key, action_timeout (how the dispatcher's state is partitioned)

Durations are seconds (a number) or strings such as ``"90s"``, ``"5m"``,
``"1h30m"``. Every validation error names the field path, e.g.
``route.routes.1.group_wait: invalid duration 'soon'``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from cityeye.errors import ConfigError

__all__ = [
    "Duration",
    "parse_duration",
    "MatcherSpec",
    "Matchers",
    "ReceiverConfig",
    "RouteConfig",
    "InhibitRuleConfig",
    "MaintenanceWindowConfig",
    "TimingsConfig",
    "DeliveryConfig",
    "ApiConfig",
    "ShardingConfig",
    "AlertingConfig",
    "load_alerting_config",
    "parse_alerting_config",
    "EXAMPLE_CONFIG",
]

EXAMPLE_CONFIG = Path(__file__).with_name("example-alerting.yaml")

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``"1h30m"``, ``"90s"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError("invalid duration: a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        m = _DURATION_RE.match(text)
        if text and m and any(m.groups()):
            h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s + ms / 1000
    raise ValueError(f"invalid duration {str(value)[:40]!r} (use seconds or e.g. '30s', '5m', '1h')")


Duration = Annotated[float, BeforeValidator(parse_duration)]

_STRICT = ConfigDict(extra="forbid")


class MatcherSpec(BaseModel):
    """``{label, op, value}`` with op one of ``=``, ``!=``, ``=~``, ``!~``."""

    model_config = _STRICT
    label: str
    op: str = "="
    value: str

    @field_validator("op")
    @classmethod
    def _op(cls, v: str) -> str:
        if v not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"op {v!r} must be one of =, !=, =~, !~")
        return v

    @model_validator(mode="after")
    def _regex(self) -> "MatcherSpec":
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {self.value!r}: {exc}") from None
        return self


def _matchers_from_any(value: Any) -> Any:
    """Accept ``["district=pudong", "rule=~.*stale.*"]`` as well as mappings."""
    if not isinstance(value, list):
        return value
    out = []
    for item in value:
        if isinstance(item, str):
            m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", item)
            if not m:
                raise ValueError(f"matcher {item!r} is not 'label<op>value'")
            out.append({"label": m.group(1), "op": m.group(2), "value": m.group(3).strip('"')})
        else:
            out.append(item)
    return out


Matchers = Annotated[list[MatcherSpec], BeforeValidator(_matchers_from_any)]


class ReceiverConfig(BaseModel):
    """A receiver; everything beyond ``name``/``type`` goes to the notifier factory."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)

    def notifier_config(self) -> dict[str, Any]:
        return self.model_dump()


class RouteConfig(BaseModel):
    """One routing-tree node; unset timings and group_by are inherited from the parent."""

    model_config = _STRICT
    receiver: str | None = None
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    matchers: Matchers = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    #: receivers notified, in turn, when an orange/red alert stays unacknowledged
    escalation: list[str] | None = None
    routes: list["RouteConfig"] = Field(default_factory=list)

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, v: dict[str, str]) -> dict[str, str]:
        for label, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{label}: bad regular expression {pattern!r}: {exc}") from None
        return v


class InhibitRuleConfig(BaseModel):
    model_config = _STRICT
    name: str = ""
    source_matchers: Matchers
    target_matchers: Matchers
    #: labels that must be equal on source and target
    equal: list[str] = Field(default_factory=list)


class MaintenanceWindowConfig(BaseModel):
    """A recurring silence, e.g. sensor X every Tuesday 02:00-04:00 Asia/Shanghai."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    matchers: Matchers
    #: mon..sun (empty = every day)
    weekdays: list[str] = Field(default_factory=list)
    start: str
    end: str
    timezone: str = "Asia/Shanghai"
    comment: str = ""

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        out = [d.strip().lower()[:3] for d in v]
        bad = [d for d in out if d not in days]
        if bad:
            raise ValueError(f"unknown weekday(s) {bad}; use {', '.join(days)}")
        return out

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.match(r"^([01]\d|2[0-4]):[0-5]\d$", v):
            raise ValueError(f"time {v!r} must be HH:MM")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"unknown timezone {v!r}") from None
        return v


class TimingsConfig(BaseModel):
    model_config = _STRICT
    #: a resolve takes effect only if no firing arrives within this delay
    keep_firing_for: Duration = 60.0
    #: flapping: enter above ``flap_high``, leave below ``flap_low`` (fractions of state changes)
    flap_low: float = Field(0.25, ge=0, le=1)
    flap_high: float = Field(0.5, ge=0, le=1)
    #: how many recent states the flapping ratio looks at
    flap_history: int = Field(10, ge=3, le=100)
    escalate_after: Duration = 900.0
    reminder_every: Duration = 600.0
    escalate_severities: list[str] = Field(default_factory=lambda: ["orange", "red"])
    #: how often the dispatcher checks timers (group flushes, escalations, resolves)
    tick: Duration = 0.5
    #: what the timers run on: ``wall`` (the clock on the wall) or ``event`` (the alert events' own
    #: time, per partition: for replays of recorded or simulated data at any speed; alerts/runtime/event_clock.py)
    clock: Literal["wall", "event"] = "wall"

    @model_validator(mode="after")
    def _order(self) -> "TimingsConfig":
        if self.flap_low > self.flap_high:
            raise ValueError("flap_low must not exceed flap_high")
        return self


class DeliveryConfig(BaseModel):
    model_config = _STRICT
    max_attempts: int = Field(8, ge=1)
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 60.0
    #: full jitter on backoff delays (off makes delays exact, for tests)
    jitter: bool = True
    #: after max_attempts a notification stays queued (durably, in the partition's state file) and is
    #: redelivered with backoff from backoff_max up to redelivery_max until the receiver takes it;
    #: false: it is dead-lettered and only an operator's replay sends it again
    redeliver: bool = True
    redelivery_max: Duration = 300.0
    #: most notifications in flight at once per receiver (a group's or an alert's are still sent in order)
    concurrency: int = Field(16, ge=1, le=256)


class ApiConfig(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9094, ge=0, le=65535)
    #: bearer token for write actions (it also reads); without one, write actions are refused
    token: SecretStr | None = None
    #: read-only bearer tokens (GET under /api/v1/); without any token at all, reads are refused too
    read_tokens: list[SecretStr] = Field(default_factory=list)


class ShardingConfig(BaseModel):
    """How ``alerts.events`` is split over ``alerts.grouped`` partitions, one state file each (alerts/runtime/).

    Dispatcher workers split the partitions between them; a single worker owns them all.
    """

    model_config = _STRICT
    #: shard by ``key``; ``false`` (the default) means key ``none``: one partition, any group_by / inhibit rule
    enabled: bool = False
    #: label the events are partitioned by (a sensor always has one district and kind), or ``none``
    key: Literal["district", "kind", "sensor", "none"] = "district"
    #: how long the API waits for the owner of a partition to apply an action
    action_timeout: Duration = 10.0

    @property
    def shard_key(self) -> str:
        """The key in effect: ``key`` when enabled, else ``none``."""
        return self.key if self.enabled else "none"


def _sharding_problem(route: RouteConfig, key: str, group_by: list[str], path: str, internal: bool) -> str | None:
    """First route under ``route`` whose groups could span shards; ``None`` if all stay in one."""
    internal = internal or route.match.get("kind") == "system"
    group_by = route.group_by if route.group_by is not None else group_by
    if not internal and key not in group_by and "sensor" not in group_by:
        return f"{path}.group_by: must include the shard key {key!r} (or 'sensor') when sharding is enabled"
    for i, child in enumerate(route.routes):
        problem = _sharding_problem(child, key, group_by, f"{path}.routes.{i}", internal)
        if problem:
            return problem
    return None


class AlertingConfig(BaseModel):
    model_config = _STRICT
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    route: RouteConfig = Field(default_factory=lambda: RouteConfig(receiver=None))
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    maintenance_windows: list[MaintenanceWindowConfig] = Field(default_factory=list)
    timings: TimingsConfig = Field(default_factory=TimingsConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    sharding: ShardingConfig = Field(default_factory=ShardingConfig)

    @model_validator(mode="after")
    def _references(self) -> "AlertingConfig":
        names = [r.name for r in self.receivers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"receivers: duplicate names {dupes}")
        if not self.route.receiver:
            raise ValueError("route.receiver: the root route needs a receiver")

        def walk(route: RouteConfig, path: str) -> None:
            for ref in [route.receiver] if route.receiver else []:
                if ref not in names:
                    raise ValueError(f"{path}.receiver: unknown receiver {ref!r}")
            for i, ref in enumerate(route.escalation or []):
                if ref not in names:
                    raise ValueError(f"{path}.escalation.{i}: unknown receiver {ref!r}")
            for i, child in enumerate(route.routes):
                walk(child, f"{path}.routes.{i}")

        walk(self.route, "route")
        if self.sharding.shard_key != "none":
            self._check_sharding()
        return self

    def _check_sharding(self) -> None:
        """Groups and inhibitions must stay within one shard (routes for ``kind: system`` are local anyway)."""
        key = self.sharding.key
        problem = _sharding_problem(self.route, key, ["district", "kind"], "route", False)
        if problem:
            raise ValueError(problem)
        for i, rule in enumerate(self.inhibit_rules):
            if key not in rule.equal and "sensor" not in rule.equal:
                raise ValueError(f"inhibit_rules.{i}.equal: must include the shard key {key!r} (or 'sensor') "
                                 "when sharding is enabled")


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def parse_alerting_config(data: Any, source: str = "<config>") -> AlertingConfig:
    """Validate a loaded mapping; :class:`ConfigError` names ``source`` and the field path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    try:
        return AlertingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid alerting configuration: {_problems(exc)}") from None


#: environment variables that override the file, so secrets need not be in it
ENV_OVERRIDES = {"CITYEYE_API_TOKEN": ("api", "token"), "CITYEYE_API_HOST": ("api", "host"),
                 "CITYEYE_API_PORT": ("api", "port")}


def load_alerting_config(path: str | Path | None = None) -> AlertingConfig:
    """Load and validate an alerting YAML file (default: the bundled example).

    ``CITYEYE_API_TOKEN``, ``CITYEYE_API_HOST`` and ``CITYEYE_API_PORT``
    override the file's ``api`` section when set.
    """
    path = Path(path) if path else EXAMPLE_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read alerting config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    for var, (section, key) in ENV_OVERRIDES.items():
        if os.environ.get(var) and (data is None or isinstance(data, dict)):
            data = data or {}
            if not isinstance(data.get(section), dict):
                data[section] = {}
            data[section][key] = os.environ[var]
    return parse_alerting_config(data, str(path))
