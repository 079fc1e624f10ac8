"""Point-in-polygon on GeoJSON geometries (ray casting), no third-party library.

Coordinates are GeoJSON's ``[lon, lat]``. A ``Polygon`` is an outer ring and
holes; a ``MultiPolygon`` a list of those.

>>> square = {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]}
>>> contains(square, 1, 1), contains(square, 3, 1)
(True, False)
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["ring_contains", "contains", "polygons", "check_geometry"]

GEOMETRY_TYPES = ("Polygon", "MultiPolygon")


def ring_contains(ring: Sequence[Sequence[float]], lon: float, lat: float) -> bool:
    """Whether ``(lon, lat)`` is inside the closed ring (even-odd rule, a horizontal ray to the east)."""
    inside = False
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i][0], ring[i][1]
        x2, y2 = ring[(i + 1) % n][0], ring[(i + 1) % n][1]
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x_cross:
                inside = not inside
    return inside


def polygons(geometry: dict[str, Any]) -> list[list[Sequence[Sequence[float]]]]:
    """The polygons (each a list of rings, outer first) of a Polygon or MultiPolygon."""
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    return list(geometry["coordinates"])


def contains(geometry: dict[str, Any], lon: float, lat: float) -> bool:
    """Whether the point is inside the geometry (inside an outer ring and in none of its holes)."""
    for rings in polygons(geometry):
        if rings and ring_contains(rings[0], lon, lat) and not any(ring_contains(h, lon, lat) for h in rings[1:]):
            return True
    return False


def check_geometry(geometry: Any) -> str | None:
    """What is wrong with a GeoJSON Polygon / MultiPolygon, or ``None``.

    >>> check_geometry({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]})
    'a ring needs at least 4 positions, first equal to last'
    """
    if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRY_TYPES:
        return f"boundary must be a GeoJSON geometry of type {' or '.join(GEOMETRY_TYPES)}"
    try:
        for rings in polygons(geometry):
            for ring in rings:
                if len(ring) < 4 or list(ring[0]) != list(ring[-1]):
                    return "a ring needs at least 4 positions, first equal to last"
                for pos in ring:
                    lon, lat = float(pos[0]), float(pos[1])
                    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                        return f"position {list(pos)} is not [lon, lat] in degrees"
    except (TypeError, ValueError, IndexError, KeyError):
        return "coordinates must be rings of [lon, lat] positions"
    return None
