"""Sensor kinds as configuration: which kinds exist, their fields, units and physical ranges.

The bundled declaration (``cityeye/kinds.yaml``) holds the built-in kinds
and the example kinds; a kinds file named by the ``kinds`` setting adds
more, in the same shape::

    kinds:
      river_temperature:                 # lower-case token: topic readings.river_temperature
        description: water temperature probe
        main_field: water_temp_c         # plotted and scored by backtests
        partitions: 4                    # readings topic partitions (all kinds: the same)
        fields:
          water_temp_c: {unit: degC, low: -5, high: 45, description: "water temperature"}
        simulation:                      # optional: the generic simulated sensor (simulators/generic.py)
          fields:                        # per field: baseline + daily cycle + noise
            water_temp_c: {baseline: 18, daily_amplitude: 1.5, peak_hour: 15, noise: 0.1}
          events:                        # injected (and labelled) in every scenario but "normal"
            - {field: water_temp_c, shape: ramp, start_h: 6, duration_h: 4, size: 12, label: warm discharge}

A kind's checks are declared in the rules (``detectors/default_rules.yaml``
or a rules file, under ``kinds.<kind>`` with a ``type`` from the rule
library). Unknown keys and bad values are errors naming the file, the line
and the field (``kinds.yaml:7: kinds.river_temperature.fields.water_temp_c.low:
Input should be a valid number``).

The process-wide declaration is :func:`declared`; every part that needs
the kinds (gateway validation, topics, registry, rules, backtests,
simulators) reads it, and :func:`use_kinds_file` extends it at start-up
(:func:`cityeye.config.load_settings` does, from the ``kinds`` setting; the
gateway and the worker do again for settings built in-process).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cityeye.errors import ConfigError
from cityeye.yaml_source import line_of, load_yaml, read_config_text

__all__ = ["KindsError", "FieldSpec", "KindSpec", "FieldProfile", "InjectedEvent", "SimulationProfile",
           "BUILTIN_KINDS_FILE", "parse_kinds", "load_kinds", "declared", "kind_names", "kind_spec", "use_kinds_file",
           "kinds_declared"]

BUILTIN_KINDS_FILE = Path(__file__).resolve().parent / "kinds.yaml"
_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class KindsError(ConfigError):
    """A kinds file that cannot be used (the message names file, line and field)."""


@dataclass(frozen=True)
class FieldSpec:
    """A known quantity: its unit is in its name (and ``unit``), its physical range here.

    Values outside ``[low, high]`` are physically impossible for the kind and
    are rejected by the gateway (a dead letter, not a reading).
    """

    name: str
    low: float
    high: float
    description: str
    unit: str = ""


class FieldProfile(BaseModel):
    """A simulated field: ``baseline + daily_amplitude * cos(2 pi (hour - peak_hour) / 24) + noise``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: float
    daily_amplitude: float = 0.0
    peak_hour: float = Field(14.0, ge=0, lt=24)
    noise: float = Field(0.0, ge=0)
    decimals: int = Field(2, ge=0, le=6)


class InjectedEvent(BaseModel):
    """An event added to a simulated field from ``start_h`` hours after the start, and its label.

    ``step``: ``+size`` for ``duration_h``; ``ramp``: from 0 to ``+size``
    over ``duration_h``, then back at once; ``spike``: ``+size`` on the one
    reading at ``start_h``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    shape: Literal["step", "ramp", "spike"]
    start_h: float = Field(ge=0)
    duration_h: float = Field(1.0, gt=0)
    size: float
    label: str = Field(min_length=1)


class SimulationProfile(BaseModel):
    """How the generic simulator makes a kind's readings (every field it names) and its events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, FieldProfile] = Field(min_length=1)
    events: tuple[InjectedEvent, ...] = ()


@dataclass(frozen=True)
class KindSpec:
    """One sensor kind: its fields, the field backtests plot and score, its topic's partitions."""

    name: str
    fields: dict[str, FieldSpec]
    main_field: str
    description: str = ""
    partitions: int = 4
    source: str = "<builtin>"
    #: the generic simulator's profile (``None``: a hand-written generator or none)
    simulation: SimulationProfile | None = None


class _FieldDecl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str = Field(min_length=1)
    low: float
    high: float
    description: str = ""

    @model_validator(mode="after")
    def _range(self) -> "_FieldDecl":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class _KindDecl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    main_field: str
    partitions: int = Field(4, ge=1, le=256)
    fields: dict[str, _FieldDecl] = Field(min_length=1)
    simulation: SimulationProfile | None = None


def _error(source: str, root: Any, path: tuple[Any, ...], msg: str) -> KindsError:
    where = ".".join(str(p) for p in path)
    return KindsError(f"{source}:{line_of(root, path) or 1}: {where}: {msg}")


def _kind(name: Any, decl: Any, source: str, root: Any) -> KindSpec:
    path = ("kinds", name)
    if not isinstance(name, str) or not _KIND_NAME.match(name):
        raise _error(source, root, path, "a kind is a lower-case token of letters, digits and '_' "
                                         "(up to 40 characters, starting with a letter)")
    if not isinstance(decl, dict):
        raise _error(source, root, path, "must be a mapping")
    try:
        kind = _KindDecl(**decl)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise _error(source, root, (*path, *err["loc"]), msg) from None
    for field_name in kind.fields:
        if not _FIELD_NAME.match(field_name):
            raise _error(source, root, (*path, "fields", field_name),
                         "a field name is an identifier of up to 64 characters")
    if kind.main_field not in kind.fields:
        raise _error(source, root, (*path, "main_field"),
                     f"{kind.main_field!r} is not one of the kind's fields ({', '.join(kind.fields)})")
    simulated = kind.simulation
    if simulated is not None:
        named = [(("fields", n), n) for n in simulated.fields]
        named += [(("events", i, "field"), event.field) for i, event in enumerate(simulated.events)]
        for where, field_name in named:
            if field_name not in kind.fields:
                raise _error(source, root, (*path, "simulation", *where),
                             f"{field_name!r} is not one of the kind's fields ({', '.join(kind.fields)})")
    fields = {n: FieldSpec(n, f.low, f.high, f.description, f.unit) for n, f in kind.fields.items()}
    return KindSpec(name, fields, kind.main_field, kind.description, kind.partitions, source, simulated)


def parse_kinds(text: str, source: str = "<string>") -> dict[str, KindSpec]:
    """The kinds declared in ``text``; raises :class:`KindsError` naming ``source``, the line and the field."""
    data, root = load_yaml(text, source, KindsError)
    if not isinstance(data, dict) or not isinstance(data.get("kinds"), dict) or not data["kinds"]:
        raise KindsError(f"{source}:1: the top level must be a mapping with a non-empty 'kinds' mapping")
    for key in data:
        if key != "kinds":
            raise _error(source, root, (key,), "unknown key; expected kinds")
    return {name: _kind(name, decl, source, root) for name, decl in data["kinds"].items()}


def load_kinds(path: str | Path) -> dict[str, KindSpec]:
    """The kinds declared in the file at ``path`` (see :func:`parse_kinds`)."""
    return parse_kinds(read_config_text(path, KindsError, "kinds file"), str(path))


_BUILTIN = load_kinds(BUILTIN_KINDS_FILE)
_declared: dict[str, KindSpec] = dict(_BUILTIN)


def declared() -> dict[str, KindSpec]:
    """Every kind this process knows (bundled ones first), by name."""
    return dict(_declared)


def kind_names() -> tuple[str, ...]:
    """The names of every declared kind."""
    return tuple(_declared)


def kind_spec(kind: str) -> KindSpec:
    """The declaration of ``kind``; :class:`ValueError` naming the known kinds when there is none."""
    spec = _declared.get(kind)
    if spec is None:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(_declared)}")
    return spec


def use_kinds_file(path: str | Path | None) -> dict[str, KindSpec]:
    """Add the kinds of the file at ``path`` to this process's kinds (``None``/empty: nothing).

    Declaring a kind again the same way is a no-op; redeclaring a known kind
    differently (a bundled one included) is a :class:`KindsError`. Returns
    the kinds the file declares.
    """
    if not path:
        return {}
    kinds = load_kinds(path)
    for name, spec in kinds.items():
        known = _declared.get(name)
        if known is not None and (known.fields, known.main_field, known.partitions) != \
                (spec.fields, spec.main_field, spec.partitions):
            raise KindsError(f"{path}: kinds.{name}: already declared differently by {known.source}")
    for name, spec in kinds.items():
        _declared.setdefault(name, spec)
    return kinds


@contextmanager
def kinds_declared(path: str | Path | None) -> Iterator[dict[str, KindSpec]]:
    """:func:`use_kinds_file` for the duration of a ``with`` block (tests, one-off tools)."""
    before = dict(_declared)
    try:
        yield use_kinds_file(path)
    finally:
        _declared.clear()
        _declared.update(before)
