"""The sensor registry: which sensors exist, where, and their levels.

A YAML file::

    sensors:
      - id: wl-huangpu-01
        kind: water_level
        district: huangpu
        name: Suzhou Creek at Waibaidu Bridge
        lat: 31.2437
        lon: 121.4860
        interval_s: 60              # expected reporting interval
        datum: Wusong datum         # vertical reference of its readings and levels
        unit: m                     # unit of its readings and levels (water_level: m only)
        levels:                     # per-sensor levels, unit in the name
          warning_m: 4.50           # 警戒水位
          guaranteed_m: 5.20        # 保证水位
          historical_max_m: 5.86

``datum`` is free text (``"mAOD"``, ``"gauge zero"``) shown wherever a level
is quoted. ``unit`` is the one unit of the kind's readings and levels, the
unit in its contract field names (:func:`contract_unit`; ``m`` for
``water_level``), filled in when left out. Another unit is an error: the
gateway carries the contract unit, so a gauge reporting centimetres or feet
is converted in its device mapping, not declared here. A kind whose fields
have several units (weather, traffic) takes no ``unit``.

Errors name the file, the line and the field (``registry.yaml:14:
sensors[2].lat: Input should be less than or equal to 90``).

Which file: ``settings.registry``, or, when that is empty, the default
registry the program declared with :func:`set_default_registry` (the
``cityeye`` command line declares the simulators' demo city,
``simulators/demo_registry.yaml``; see ``launch/cli.py``). The kernel itself
knows no particular file. :func:`load_settings_and_registry` is what every
service command uses to load both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cityeye.config import Settings, load_settings
from cityeye.contracts import kind_fields
from cityeye.kinds import kind_names
from cityeye.errors import RegistryError
from cityeye.yaml_source import line_of, load_yaml, read_config_text

__all__ = ["Sensor", "contract_unit", "SensorRegistry", "load_registry", "parse_registry", "registry_for", "set_default_registry",
           "default_registry", "load_settings_and_registry"]

#: the registry used when ``settings.registry`` is empty (declared by the program, see set_default_registry)
_default_registry: Path | None = None

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def contract_unit(kind: str) -> str | None:
    """The one unit of ``kind``'s readings (the unit in its contract field names), or None if they have several.

    >>> contract_unit("water_level"), contract_unit("weather")
    ('m', None)
    """
    units = {spec.unit or name.rsplit("_", 1)[-1] for name, spec in kind_fields(kind).items()}
    return units.pop() if len(units) == 1 else None


class Sensor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: str
    district: str
    name: str = ""
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    interval_s: float = Field(60.0, gt=0)
    levels: dict[str, float] = Field(default_factory=dict)
    #: vertical reference of the readings and levels ("Wusong datum", "mAOD", "gauge zero")
    datum: str = Field("", max_length=100)
    #: unit of the readings and levels: the kind's contract unit (filled in when left out)
    unit: str = Field("", validate_default=True)

    @field_validator("id", "district")
    @classmethod
    def _token(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("must be 1-64 characters of letters, digits, '_', '.', '-' (no '/', '+', '#')")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in kind_names():
            raise ValueError(f"unknown kind {v!r}; expected one of {', '.join(kind_names())}")
        return v

    @field_validator("datum")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if _CONTROL.search(v):
            raise ValueError("must be one line of text (no control characters)")
        return v.strip()

    @field_validator("unit")
    @classmethod
    def _contract_unit(cls, v: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is wrong; that error is reported
            return v
        unit = contract_unit(kind)
        if unit is None:
            if v:
                fields = ", ".join(kind_fields(kind)) or "no contract fields"
                raise ValueError(f"{kind} readings have several fields, each with its unit in its name ({fields}); "
                                 "unit does not apply, leave it out")
            return v
        if v and v != unit:
            field = next(iter(kind_fields(kind)))
            raise ValueError(f"{kind} readings and levels are in {unit!r} (the contract field {field}), not {v!r}: "
                             f"the gateway carries {unit!r}, so a device reporting {v!r} is converted in its device "
                             "mapping, and levels are stated in the contract unit")
        return unit

    def agrees_with(self, kind: str, district: str | None = None) -> bool:
        """Whether a reading's ``kind`` (and ``district``, when given) are the registered ones.

        The one "kind vs registry" check: the gateway refuses a message whose
        topic disagrees (``registry_mismatch``), the worker a record that
        reached Kafka another way.
        """
        return self.kind == kind and (district is None or self.district == district)


@dataclass
class SensorRegistry:
    """Sensors by id; ``get`` returns ``None`` for an unknown sensor."""

    sensors: dict[str, Sensor] = field(default_factory=dict)
    source: str = "<memory>"

    def get(self, sensor_id: str) -> Sensor | None:
        return self.sensors.get(sensor_id)

    def __len__(self) -> int:
        return len(self.sensors)

    def __iter__(self):
        return iter(self.sensors.values())

    def by_kind(self, kind: str) -> list[Sensor]:
        return [s for s in self.sensors.values() if s.kind == kind]


def parse_registry(text: str, source: str = "<string>") -> SensorRegistry:
    """Parse and validate registry YAML; raises :class:`RegistryError`."""
    data, root = load_yaml(text, source, RegistryError)
    if not isinstance(data, dict) or not isinstance(data.get("sensors"), list):
        raise RegistryError(f"{source}:1: top level must be a mapping with a 'sensors' list")
    registry = SensorRegistry(source=source)
    for i, entry in enumerate(data["sensors"]):
        if not isinstance(entry, dict):
            line = line_of(root, ("sensors", i))
            raise RegistryError(f"{source}:{line}: sensors[{i}]: must be a mapping")
        try:
            sensor = Sensor(**entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            line = line_of(root, ("sensors", i, *loc[:1]))
            where = ".".join(str(p) for p in loc) or "entry"
            msg = err["msg"].removeprefix("Value error, ")
            raise RegistryError(f"{source}:{line}: sensors[{i}].{where}: {msg}") from None
        except TypeError as exc:
            line = line_of(root, ("sensors", i))
            raise RegistryError(f"{source}:{line}: sensors[{i}]: {exc}") from None
        if sensor.id in registry.sensors:
            line = line_of(root, ("sensors", i, "id"))
            raise RegistryError(f"{source}:{line}: sensors[{i}].id: duplicate sensor id {sensor.id!r}")
        registry.sensors[sensor.id] = sensor
    return registry


def load_registry(path: str | Path) -> SensorRegistry:
    """Load a registry file; raises :class:`RegistryError` naming file and line."""
    return parse_registry(read_config_text(path, RegistryError, "registry"), source=str(path))


def set_default_registry(path: str | Path | None) -> None:
    """Declare the registry used when ``settings.registry`` is empty (``None``: there is none)."""
    global _default_registry
    _default_registry = Path(path) if path is not None else None


def default_registry() -> Path | None:
    """The registry declared with :func:`set_default_registry`, if any."""
    return _default_registry


def registry_for(settings: Settings) -> SensorRegistry:
    """``settings.registry``, or the declared default registry when none is configured.

    Raises :class:`RegistryError` when neither is there.
    """
    path = settings.registry or _default_registry
    if not path:
        raise RegistryError("no sensor registry: set `registry` in the configuration (or CITYEYE_REGISTRY)")
    return load_registry(path)


def load_settings_and_registry(path: str | Path | None = None) -> tuple[Settings, SensorRegistry]:
    """The settings (see :func:`cityeye.config.load_settings`) and their registry.
    The kinds file of the settings is declared by :func:`load_settings`,
    before the registry (whose sensors may be of its kinds) is read.

    The returned settings name the registry file actually loaded, so every
    part handed them (worker, dispatcher) reads the same one. Raises
    :class:`~cityeye.errors.ConfigError` (or :class:`RegistryError`).
    """
    settings = load_settings(path)
    registry = registry_for(settings)
    if not settings.registry:
        settings = settings.model_copy(update={"registry": registry.source})
    return settings, registry
