"""The organisation as configuration: units, departments, people, sensor placement.

A YAML file (``cases/demo_org.yaml`` is the demo city)::

    units:                       # city → district → street → grid → community
      - {code: "310000", name: 上海市, name_en: Shanghai, level: city, duty_receivers: [city-desk]}
      - {code: "310101", name: 黄浦区, level: district, parent: "310000", district: huangpu,
         boundary: {type: Polygon, coordinates: [[[121.46, 31.21], ...]]}}
    departments:
      - {code: water, name: 水务局, levels: [district, city], kinds: [water_level], rules: []}
    people:
      - {username: disp-hp, name: 王派遣, role: dispatcher, unit: "310101"}
      - {username: water-hp, name: 李处置, role: handler, unit: "310101", department: water}
    placements: {wl-huangpu-01: "310101-001-01"}   # sensor id → grid code

A sensor is placed in a grid by ``placements`` (the registry's own record of
it), else by point-in-polygon of its registry position over the grids'
boundaries, else in the unit whose ``district`` is the sensor's district.
Errors name the file, the line and the field, as the registry's do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cases.errors import OrgError, org_error
from cases.geometry import check_geometry, contains, polygons
from cityeye.yaml_source import line_of, load_yaml, read_config_text

__all__ = ["Level", "LEVELS", "ROLES", "Unit", "Department", "Person", "Org", "parse_org", "load_org",
           "parse_yaml_model"]

#: the five levels, top down (三级平台、五级应用)
Level = Literal["city", "district", "street", "grid", "community"]
Role = Literal["duty_officer", "dispatcher", "handler", "supervisor", "head_of_shift"]
LEVELS: tuple[str, ...] = get_args(Level)
ROLES: tuple[str, ...] = get_args(Role)
LEVEL_NAMES_ZH = {"city": "市级", "district": "区级", "street": "街镇", "grid": "网格", "community": "社区"}


class Unit(BaseModel):
    """One unit of the hierarchy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1)
    name_en: str = ""
    level: Level
    parent: str | None = None
    #: the registry's district name this unit is (districts only), e.g. ``huangpu``
    district: str = ""
    boundary: dict[str, Any] | None = None
    #: receivers (names in the cases configuration) of this level's duty desk
    duty_receivers: list[str] = Field(default_factory=list)

    @field_validator("boundary")
    @classmethod
    def _boundary(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = None if v is None else check_geometry(v)
        if problem:
            raise ValueError(problem)
        return v


class Department(BaseModel):
    """A department: the levels it serves and what it owns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1)
    name_en: str = ""
    levels: list[Level] = Field(min_length=1)
    kinds: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)


class Person(BaseModel):
    """A person who signs in: a role in a unit (and a department for handlers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1)
    role: Role
    unit: str
    department: str | None = None


class _OrgFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units: list[Unit] = Field(min_length=1)
    departments: list[Department] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    placements: dict[str, str] = Field(default_factory=dict)


class Org:
    """The validated organisation, with the look-ups the service needs."""

    def __init__(self, units: list[Unit], departments: list[Department], people: list[Person],
                 placements: dict[str, str]) -> None:
        self.units = {u.code: u for u in units}
        self.departments = {d.code: d for d in departments}
        self.people = {p.username: p for p in people}
        self.placements = dict(placements)
        self.city = next(u for u in units if u.level == "city")
        self._by_district = {u.district: u for u in units if u.district}

    # -- the hierarchy
    def chain(self, code: str) -> list[Unit]:
        """The unit and its ancestors, bottom up (the escalation path)."""
        out = []
        unit: Unit | None = self.units.get(code)
        while unit is not None:
            out.append(unit)
            unit = self.units.get(unit.parent) if unit.parent else None
        return out

    def ancestor_at(self, code: str, level: str) -> Unit | None:
        """The unit at ``level`` above (or equal to) ``code``."""
        return next((u for u in self.chain(code) if u.level == level), None)

    def within(self, inner: str, outer: str) -> bool:
        """Whether unit ``inner`` is ``outer`` or lies inside it."""
        return any(u.code == outer for u in self.chain(inner))

    def district_of(self, code: str) -> Unit | None:
        return self.ancestor_at(code, "district")

    # -- placing things
    def locate(self, lon: float, lat: float) -> Unit | None:
        """The deepest unit whose boundary contains the point, or ``None``."""
        found = [u for u in self.units.values() if u.boundary and contains(u.boundary, lon, lat)]
        return max(found, key=lambda u: LEVELS.index(u.level), default=None)

    def place(self, sensor_id: str, lon: float | None = None, lat: float | None = None,
              district: str = "") -> Unit:
        """Where a sensor is: its placement, its position's unit, its district's unit, else the city."""
        if sensor_id in self.placements:
            return self.units[self.placements[sensor_id]]
        if lon is not None and lat is not None:
            unit = self.locate(lon, lat)
            if unit is not None:
                return unit
        return self._by_district.get(district, self.city)

    def unit_for_district(self, district: str) -> Unit | None:
        return self._by_district.get(district)

    # -- who is responsible
    def department_for(self, kind: str, rule: str = "", category: str = "") -> Department | None:
        """The department owning the rule, else the category, else the kind."""
        for attr, value in (("rules", rule), ("categories", category), ("kinds", kind)):
            if value:
                for dept in self.departments.values():
                    if value in getattr(dept, attr):
                        return dept
        return None

    def dispatch_level(self, department: Department, unit_code: str, at_least: str = "community") -> Unit:
        """The unit the department is dispatched at: the lowest level it serves above the case's unit.

        ``at_least`` raises the level (an urgent case goes no lower than, say, the district).
        """
        floor = LEVELS.index(at_least)
        for unit in self.chain(unit_code):
            idx = LEVELS.index(unit.level)
            if unit.level in department.levels and idx <= floor:
                return unit
        return self.city

    def cap_polygons(self, sensors: Iterable[Any] = ()) -> dict[str, str]:
        """CAP ``<polygon>`` rings (``"lat,lon lat,lon ..."``) keyed as the CAP notifier looks them up.

        Every unit with a boundary by its code and, for districts, by the registry's district name;
        each of ``sensors`` (registry entries: ``id``, ``lon``, ``lat``, ``district``) by its id, from
        the boundary of the unit it is placed in (its grid), when that unit has one.
        """
        out: dict[str, str] = {}
        for unit in self.units.values():
            if unit.boundary:
                out[unit.code] = _cap_ring(unit.boundary)
                if unit.district:
                    out[unit.district] = out[unit.code]
        for sensor in sensors:
            unit = self.place(sensor.id, sensor.lon, sensor.lat, sensor.district)
            if unit.boundary:
                out[sensor.id] = out[unit.code]
        return out

    def to_api(self) -> dict[str, Any]:
        return {
            "levels": list(LEVELS),
            "units": [u.model_dump() for u in self.units.values()],
            "departments": [d.model_dump() for d in self.departments.values()],
        }


def _cap_ring(geometry: dict[str, Any]) -> str:
    """The outer ring of the geometry's first polygon in CAP's ``lat,lon`` order."""
    ring = polygons(geometry)[0][0]
    return " ".join(f"{pos[1]:.6f},{pos[0]:.6f}" for pos in ring)


M = TypeVar("M", bound=BaseModel)


def parse_yaml_model(text: str, source: str, model: type[M], what: str) -> tuple[M, Any]:
    """``(model instance, YAML node tree)`` of a configuration file's text; :class:`OrgError` names the
    file, the line and the field at fault (``what`` says what the top level must be)."""
    data, root = load_yaml(text, source, OrgError)
    if not isinstance(data, dict):
        raise OrgError(f"{source}:1: {what}")
    try:
        return model(**data), root
    except ValidationError as exc:
        raise org_error(exc, root, source) from None


def parse_org(text: str, source: str = "<org>") -> Org:
    """Validate an org file's text; :class:`OrgError` names the file, line and field."""
    parsed, root = parse_yaml_model(text, source, _OrgFile,
                                    "an org file is a mapping with units, departments, people, placements")

    def fail(path: tuple[Any, ...], msg: str) -> OrgError:
        return OrgError(f"{source}:{line_of(root, path)}: {'.'.join(str(p) for p in path)}: {msg}")

    codes: dict[str, Unit] = {}
    for i, unit in enumerate(parsed.units):
        if unit.code in codes:
            raise fail(("units", i, "code"), f"duplicate unit code {unit.code!r}")
        codes[unit.code] = unit
    cities = [i for i, u in enumerate(parsed.units) if u.level == "city"]
    if len(cities) != 1:
        raise fail(("units",), f"exactly one unit of level city is needed, found {len(cities)}")
    for i, unit in enumerate(parsed.units):
        if unit.level == "city":
            if unit.parent:
                raise fail(("units", i, "parent"), "the city has no parent")
            continue
        parent = codes.get(unit.parent or "")
        if parent is None:
            raise fail(("units", i, "parent"), f"unknown parent unit {unit.parent!r}")
        if LEVELS.index(parent.level) >= LEVELS.index(unit.level):
            raise fail(("units", i, "parent"), f"a {unit.level}'s parent must be above it, not a {parent.level}")
    depts = {d.code for d in parsed.departments}
    if len(depts) != len(parsed.departments):
        raise fail(("departments",), "duplicate department code")
    users: set[str] = set()
    for i, person in enumerate(parsed.people):
        if person.username in users:
            raise fail(("people", i, "username"), f"duplicate username {person.username!r}")
        users.add(person.username)
        if person.unit not in codes:
            raise fail(("people", i, "unit"), f"unknown unit {person.unit!r}")
        if person.role == "handler" and not person.department:
            raise fail(("people", i, "department"), "a handler belongs to a department")
        if person.department and person.department not in depts:
            raise fail(("people", i, "department"), f"unknown department {person.department!r}")
    for sensor, code in parsed.placements.items():
        if code not in codes:
            raise fail(("placements", sensor), f"unknown unit {code!r}")
    return Org(parsed.units, parsed.departments, parsed.people, parsed.placements)


def load_org(path: str | Path) -> Org:
    """Load and validate an org file."""
    return parse_org(read_config_text(path, OrgError, "org file"), source=str(path))
