"""Rules as configuration: which checks a sensor gets, with every parameter, in layers.

The built-in rules (``detectors/default_rules.yaml``) declare each kind's
checks. A rules file changes them in four layers, each more specific than
the last (a later layer wins, parameter by parameter; a ``levels`` ladder
merges severity by severity)::

    kinds:                       # all sensors of a kind
      water_level:
        rate_of_rise: {rate_per_hour: 0.1}
        surge: {type: rate_of_change, field: level_m, rate_per_hour: 1.0, window_s: 15m, severity: orange}
    districts:                   # the sensors of a district
      pudong:
        water_level:
          rate_of_rise: {rate_per_hour: 0.2}
    groups:                      # sensors by registry tag, in the order written here
      slow-river:
        water_level:
          forecast: {window_s: [2h, 5 readings], horizon_s: 3h}
    sensors:                     # one sensor (its kind is the registry's)
      wl-huangpu-01:
        flatline: {enabled: false}

A check declared for the first time needs a ``type`` (see
:data:`detectors.rule_library.CHECK_TYPES`); a later layer may not change
it. ``enabled: false`` removes a check. Unknown keys, unknown kinds, check
types and parameters, and bad values are errors naming the file, line and
field (``rules.yaml:14: districts.pudong.water_level.rate_of_rise.rate_per_hour:
Input should be a valid number``). :meth:`Rulebook.effective` gives a
sensor's rules with the layer each value came from (``cityeye rules show``);
:attr:`Rulebook.version` is a content hash carried by every alert event.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from cityeye.kinds import kind_names
from cityeye.errors import ConfigError
from cityeye.yaml_source import line_of, load_yaml, read_config_text
from detectors.rule_library import BuiltCheck, RuleError, make_check, resolve_params, validate_params

__all__ = ["Rulebook", "EffectiveCheck", "RulesError", "BUILTIN_RULES", "load_rulebook", "parse_rulebook"]

BUILTIN_RULES = Path(__file__).resolve().parent / "default_rules.yaml"
_LAYERS = ("kinds", "districts", "groups", "sensors")
_META = {"type", "enabled"}
_REGISTRY_REF = re.compile(r"registry:([A-Za-z_][A-Za-z0-9_]*)")


class RulesError(ConfigError):
    """A rules file that cannot be used (the message names file, line and field)."""


@dataclass
class EffectiveCheck:
    """One check of one sensor as the layers made it, with where each value came from."""

    name: str
    type: str
    params: dict[str, Any]
    #: parameter -> layer that set it ("built-in", "kinds.water_level (rules.yaml:3)", ...)
    source: dict[str, str] = field(default_factory=dict)


@dataclass
class _Entry:
    """One layer's declaration of one check."""

    decl: dict[str, Any]
    where: str
    line: int | None


class Rulebook:
    """The built-in rules and (optionally) one rules file, layered."""

    def __init__(self, builtin: dict[str, Any], user: dict[str, Any] | None = None, source: str = "<builtin>",
                 root: yaml.Node | None = None) -> None:
        self.source, self._root = source, root
        self.kinds: dict[str, dict[str, _Entry]] = {}
        for kind, checks in builtin["kinds"].items():
            self.kinds[kind] = {name: _Entry(dict(d), "built-in", None) for name, d in checks.items()}
        self.layers: dict[str, dict[str, Any]] = {layer: {} for layer in _LAYERS}
        user = user or {}
        self._parse_user(user)
        blob = json.dumps({"builtin": builtin, "user": user}, sort_keys=True, default=str)
        #: content hash of everything that decides the checks
        self.version = hashlib.sha256(blob.encode()).hexdigest()[:12]
        self._declarations: dict[tuple[Any, ...], tuple[tuple[EffectiveCheck, dict[str, Any]], ...]] = {}
        self._plans: dict[tuple[Any, ...], tuple[_PlannedCheck, ...]] = {}

    # -- loading ----------------------------------------------------------------
    def _fail(self, path: tuple[Any, ...], msg: str) -> RulesError:
        line = line_of(self._root, path)
        where = ".".join(str(p) for p in path)
        return RulesError(f"{self.source}:{line or 1}: {where}: {msg}")

    def _mapping(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self._fail(path, "must be a mapping")
        return value

    def _parse_user(self, user: dict[str, Any]) -> None:
        for key in user:
            if key not in _LAYERS:
                raise self._fail((key,), f"unknown key; expected one of {', '.join(_LAYERS)}")
        for kind, checks in self._mapping(user.get("kinds") or {}, ("kinds",)).items():
            self._kind_layer(("kinds", kind), kind, checks)
        for layer in ("districts", "groups"):
            for key, kinds in self._mapping(user.get(layer) or {}, (layer,)).items():
                for kind, checks in self._mapping(kinds, (layer, key)).items():
                    self._kind_layer((layer, key, kind), kind, checks)
        for sensor_id, checks in self._mapping(user.get("sensors") or {}, ("sensors",)).items():
            path = ("sensors", sensor_id)
            self.layers["sensors"][str(sensor_id)] = {
                name: _Entry(self._mapping(d, (*path, name)), f"sensors.{sensor_id}", line_of(self._root, (*path, name)))
                for name, d in self._mapping(checks, path).items()}

    def _kind_layer(self, path: tuple[Any, ...], kind: str, checks: Any) -> None:
        if kind not in kind_names():
            raise self._fail(path, f"unknown kind; expected one of {', '.join(kind_names())}")
        entries = {}
        for name, decl in self._mapping(checks, path).items():
            entry = _Entry(self._mapping(decl, (*path, name)), ".".join(map(str, path)),
                           line_of(self._root, (*path, name)))
            base = self._base(kind, name)
            if not base and path[0] != "kinds":
                raise self._fail((*path, name), f"{kind}.{name} is not a check of {kind}; declare it under kinds first")
            self._validate(kind, name, [*base, entry], (*path, name))
            entries[name] = entry
        if path[0] == "kinds":
            self.layers["kinds"][kind] = entries
        else:
            self.layers[path[0]].setdefault(path[1], {})[kind] = entries

    def _base(self, kind: str, name: str) -> list[_Entry]:
        """The built-in and ``kinds`` layer declarations of a check (empty: no such check)."""
        return [e for e in (self.kinds.get(kind, {}).get(name), self.layers["kinds"].get(kind, {}).get(name))
                if e is not None]

    def _validate(self, kind: str, name: str, entries: list[_Entry], path: tuple[Any, ...]) -> None:
        decl: dict[str, Any] = {}
        for entry in entries:
            if "type" in entry.decl and decl.get("type") not in (None, entry.decl["type"]):
                raise self._fail((*path, "type"), f"cannot change the type of {kind}.{name} "
                                                  f"({decl['type']!r}); declare a new check instead")
            decl = _merge(decl, entry.decl)
        if decl.get("type") is None:
            raise self._fail(path, f"{kind}.{name} is not a built-in check: it needs a 'type'")
        if not isinstance(decl.get("enabled", True), bool):
            raise self._fail((*path, "enabled"), "must be true or false")
        try:
            validate_params(decl["type"], {k: v for k, v in decl.items() if k not in _META})
        except RuleError as exc:
            param, _, msg = str(exc).partition(": ")
            if msg and param.split(".")[0] in decl:
                raise self._fail((*path, *param.split(".")), msg) from None
            raise self._fail(path, str(exc)) from None

    # -- use ----------------------------------------------------------------------
    def _entries(self, sensor: Any) -> dict[str, list[_Entry]]:
        kind = sensor.kind
        names = [*self.kinds.get(kind, {}), *(n for n in self.layers["kinds"].get(kind, {})
                                               if n not in self.kinds.get(kind, {}))]
        out = {name: self._base(kind, name) for name in names}
        tags = set(getattr(sensor, "tags", ()) or ())
        layered = [self.layers["districts"].get(sensor.district, {}).get(kind, {})]
        layered += [kinds.get(kind, {}) for group, kinds in self.layers["groups"].items() if group in tags]
        for layer in layered:
            for name, entry in layer.items():
                out[name].append(entry)
        for name, entry in self.layers["sensors"].get(sensor.id, {}).items():
            path = ("sensors", sensor.id, name)
            if name not in out:
                raise self._fail(path, f"{name} is not a check of sensor {sensor.id} ({kind}): "
                                       f"expected one of {', '.join(out)}")
            self._validate(kind, name, [*out[name], entry], path)
            out[name].append(entry)
        return out

    def effective(self, sensor: Any) -> list[EffectiveCheck]:
        """The checks of ``sensor`` (``kind``, ``district``, ``id``, optional ``tags``), enabled or not."""
        out = []
        for name, entries in self._entries(sensor).items():
            decl: dict[str, Any] = {}
            source: dict[str, str] = {}
            for entry in entries:
                decl = _merge(decl, entry.decl)
                where = entry.where if entry.line is None else f"{entry.where} ({self.source}:{entry.line})"
                source.update({k: where for k in entry.decl})
            out.append(EffectiveCheck(f"{sensor.kind}.{name}", decl["type"], decl, source))
        return out

    def level_keys(self, kind: str) -> set[str]:
        """The registry level names the rules of ``kind`` read (``registry:<name>`` anywhere in a check)."""
        decls = [e.decl for entries in (self.kinds.get(kind, {}), self.layers["kinds"].get(kind, {}))
                 for e in entries.values()]
        for layer in ("districts", "groups"):
            decls += [e.decl for kinds in self.layers[layer].values() for e in kinds.get(kind, {}).values()]
        decls += [e.decl for checks in self.layers["sensors"].values() for e in checks.values()]
        return set(_REGISTRY_REF.findall(json.dumps(decls)))

    def check_registry(self, registry: Any) -> None:
        """Refuse what the registry and the rules disagree on (call at start-up).

        ``sensors`` entries must name a sensor of the registry and its checks;
        every registry level must be one the rules read: a typo such as
        ``warnng_m`` would otherwise drop a flood rule without a word.
        """
        for sensor_id in self.layers["sensors"]:
            sensor = registry.get(sensor_id)
            if sensor is None:
                raise self._fail(("sensors", sensor_id), "no such sensor in the registry")
            self._entries(sensor)
        known: dict[str, set[str]] = {}
        for sensor in registry:
            keys = known.setdefault(sensor.kind, self.level_keys(sensor.kind))
            for level in getattr(sensor, "levels", {}) or {}:
                if level not in keys:
                    raise RulesError(f"{getattr(registry, 'source', 'registry')}: sensor {sensor.id}: levels.{level}: "
                                     f"no rule of {sensor.kind} reads this level; expected one of "
                                     f"{', '.join(sorted(keys)) or '(none)'}")

    def build(self, sensor: Any) -> list[tuple[EffectiveCheck, BuiltCheck]]:
        """Every enabled check of ``sensor`` built, with the builder's notes (sampling, missing levels)."""
        out = []
        for planned in self._plan(sensor):
            check = None if planned.resolved is None else self._make(planned, sensor)
            out.append((copy.deepcopy(planned.eff),
                        BuiltCheck(check, copy.deepcopy(planned.resolved or {}), list(planned.notes))))
        return out

    def checks_for(self, sensor: Any) -> list:
        """The built checks of ``sensor`` (what the stream worker runs).

        Each check carries ``rule_spec``, its type and resolved parameters as
        JSON: a worker applying changed rules keeps the state of every check
        whose ``rule_spec`` did not change. Sensors of the same rules, levels
        and interval share the work of resolving them (:meth:`_plan`), never
        a check or its parameters.
        """
        out = []
        for planned in self._plan(sensor):
            if planned.resolved is not None:
                check = self._make(planned, sensor)
                check.rule_spec = planned.rule_spec
                out.append(check)
        return out

    # -- plans: what a sensor's checks are built from, shared by the sensors alike ----------------
    def _plan(self, sensor: Any) -> tuple[_PlannedCheck, ...]:
        """The enabled checks of ``sensor`` resolved for its levels and interval (cached; the rulebook
        never changes once made, a reload makes a new one)."""
        levels = dict(getattr(sensor, "levels", {}) or {})
        interval = float(getattr(sensor, "interval_s", 60.0) or 60.0)
        layers = self._layers_key(sensor)
        key = (layers, tuple(sorted(levels.items())), interval)
        plan = self._plans.get(key)
        if plan is None:
            plan = tuple(self._resolve(eff, params, levels, interval, sensor) for eff, params in self._declared(sensor))
            _bounded_put(self._plans, key, plan)
        return plan

    def _layers_key(self, sensor: Any) -> tuple[Any, ...]:
        """What decides which declarations apply to ``sensor``: kind, district, tags and, if the rules
        name it, the sensor itself."""
        sensor_id = sensor.id if sensor.id in self.layers["sensors"] else None
        return sensor.kind, sensor.district, frozenset(getattr(sensor, "tags", ()) or ()), sensor_id

    def _declared(self, sensor: Any) -> tuple[tuple[EffectiveCheck, dict[str, Any]], ...]:
        """The enabled checks of ``sensor`` with their validated parameters, before levels and interval
        (cached per :meth:`_layers_key`)."""
        key = self._layers_key(sensor)
        declared = self._declarations.get(key)
        if declared is None:
            declared = []
            for eff in self.effective(sensor):
                if eff.params.get("enabled", True):
                    params = {k: v for k, v in eff.params.items() if k not in _META}
                    try:
                        declared.append((eff, validate_params(eff.type, params)))
                    except RuleError as exc:
                        raise RulesError(f"{eff.name} of sensor {sensor.id}: {exc}") from None
            declared = tuple(declared)
            _bounded_put(self._declarations, key, declared)
        return declared

    @staticmethod
    def _resolve(eff: EffectiveCheck, params: dict[str, Any], levels: dict[str, float], interval: float,
                 sensor: Any) -> _PlannedCheck:
        try:
            resolved, notes = resolve_params(eff.type, params, levels, interval)
        except RuleError as exc:
            raise RulesError(f"{eff.name} of sensor {sensor.id}: {exc}") from None
        spec = None if resolved is None else json.dumps({"type": eff.type, **resolved}, sort_keys=True, default=str)
        return _PlannedCheck(eff, resolved, tuple(notes), spec)

    @staticmethod
    def _make(planned: _PlannedCheck, sensor: Any) -> Any:
        try:
            return make_check(planned.eff.name, planned.eff.type, planned.resolved)
        except RuleError as exc:
            raise RulesError(f"{planned.eff.name} of sensor {sensor.id}: {exc}") from None


class _PlannedCheck(NamedTuple):
    """One check of a sensor, resolved but not built (shared by sensors alike: never changed)."""

    eff: EffectiveCheck
    #: parameters resolved for the sensor's levels and interval (None: not built, the notes say why)
    resolved: dict[str, Any] | None
    notes: tuple[str, ...]
    #: the check's ``rule_spec``
    rule_spec: str | None


#: most entries of each of a rulebook's plan caches (a registry of more distinct levels than this,
#: or readings of unregistered sensors in many districts, start the cache afresh when it is full)
_CACHE_ENTRIES = 4096


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_ENTRIES:
        cache.clear()
    cache[key] = value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "levels" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _builtin() -> dict[str, Any]:
    return yaml.safe_load(BUILTIN_RULES.read_text(encoding="utf-8"))


def parse_rulebook(text: str | None, source: str = "<string>") -> Rulebook:
    """The built-in rules changed by the rules file ``text`` (``None``: the built-in rules alone)."""
    if text is None:
        return Rulebook(_builtin())
    data, root = load_yaml(text, source, RulesError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(f"{source}:1: the top level must be a mapping of {', '.join(_LAYERS)}")
    return Rulebook(_builtin(), data, source, root)


def load_rulebook(path: str | Path | None) -> Rulebook:
    """The rules file at ``path`` over the built-in rules (``None``/empty: the built-in rules)."""
    if not path:
        return parse_rulebook(None)
    return parse_rulebook(read_config_text(path, RulesError, "the rules file"), str(path))
