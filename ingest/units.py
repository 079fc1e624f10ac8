"""Unit conversion for device formats: pint works out a factor once, readings only multiply.

Converting each value through :mod:`pint` costs tens of microseconds; a
reading needs a fraction of one. So :func:`converter` asks pint once per
``(from, to)`` pair for the affine map ``to = a * from + b`` (``b`` is 0 but
for temperatures) and caches it. The names are pint's (``cm``, ``inch``,
``degF``, ``mph``, ``knot``, ``hPa``, ``1/minute``), the contract's
(``cityeye/kinds.yaml``: ``veh/h``, ``%LEL``, ``ug/m3``, ``deg``) and SenML's
(RFC 8428 section 12.1 and RFC 8798: ``Cel``, ``%RH``, ``km/h``, ``mm/h``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cityeye.errors import ValidationError

__all__ = ["Affine", "UnitError", "SENML_UNITS", "converter", "warm_up"]

#: SenML units (RFC 8428 primary, RFC 8798 secondary) the contract's fields can be given in -> pint
SENML_UNITS: dict[str, str] = {
    "m": "m", "cm": "cm", "mm": "mm", "km": "km",
    "m/s": "m/s", "km/h": "km/h", "m/h": "m/hour", "mm/h": "mm/hour",
    "Cel": "degC", "K": "kelvin",
    "%": "percent", "%RH": "percent", "/": "dimensionless", "ppm": "ppm", "/100": "percent",
    "1/s": "1/s", "1/min": "1/minute", "count": "dimensionless",
    "Pa": "Pa", "hPa": "hPa", "ug/m3": "microgram/m**3", "kg/m3": "kg/m**3",
    "rad": "radian", "s": "s", "ms": "ms", "min": "minute", "h": "hour",
    "V": "V", "mV": "mV", "A": "A", "mA": "mA", "W": "W", "kW": "kW", "Hz": "Hz", "dB": "dB",
}

#: contract units (kinds files) pint does not read as written
_CONTRACT_ALIASES: dict[str, str] = {
    "%": "percent", "%LEL": "percent", "veh/h": "1/hour", "vehicles/h": "1/hour",
    "ug/m3": "microgram/m**3", "mg/m3": "milligram/m**3", "deg": "degree", "degC": "degC",
}


class UnitError(ValidationError):
    """A unit pint does not know, or two units of different dimensions."""


@dataclass(frozen=True)
class Affine:
    """``value * scale + offset``: a unit conversion worked out once.

    A scale that is the inverse of a short decimal (cm -> m: 1/100, km/h ->
    m/s: 1/3.6) divides by it instead, so ``460 cm`` is ``4.6 m`` and
    ``18 km/h`` ``5.0 m/s``, not ``4.6000000000000005`` and ``5.000000000000001``.
    """

    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        inverse = 1.0 / self.scale if self.scale else 0.0
        short = round(inverse, 6)
        divisor = short if abs(inverse) > 1 and abs(inverse - short) < 1e-9 * abs(inverse) else None
        object.__setattr__(self, "_divisor", divisor)

    def __call__(self, value: float) -> float:
        converted = value / self._divisor if self._divisor is not None else value * self.scale
        if self.offset:  # pint's zero points carry float noise (77 degF: 25.000000000000036 degC)
            return float(f"{converted + self.offset:.12g}")
        return converted


@functools.cache
def _registry():
    import pint

    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def _pint_name(unit: str) -> str:
    return _CONTRACT_ALIASES.get(unit, unit)


@functools.lru_cache(maxsize=1024)
def converter(from_unit: str, to_unit: str) -> Affine:
    """The conversion from ``from_unit`` to ``to_unit`` (pint or contract names).

    >>> converter("cm", "m")(462)
    4.62
    >>> round(converter("degF", "degC")(212), 6)
    100.0

    Raises :class:`UnitError` naming both units when pint does not know one
    or they measure different things.
    """
    import pint

    if from_unit == to_unit:
        return Affine()
    ureg = _registry()
    try:
        zero = ureg.Quantity(0.0, _pint_name(from_unit)).to(_pint_name(to_unit)).magnitude
        one = ureg.Quantity(1.0, _pint_name(from_unit)).to(_pint_name(to_unit)).magnitude
    except pint.errors.DimensionalityError:
        raise UnitError(f"{from_unit!r} cannot be converted to {to_unit!r} (different quantities)") from None
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, SyntaxError):
        raise UnitError(f"unknown unit {from_unit!r} or {to_unit!r}") from None
    return Affine(float(one - zero), float(zero))


def warm_up() -> None:
    """Load pint's unit registry now (about a second), not on the first device message."""
    converter("cm", "m")
