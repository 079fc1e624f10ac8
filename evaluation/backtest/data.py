"""Recorded or simulated readings for a backtest, with their labels.

A :class:`Dataset` is every sensor's readings in time order plus the
labelled events (ground truth, optional). Sources:

* :func:`from_csv` -- one file per sensor (``timestamp`` + field columns, or
  one ``value`` column for the kind's main field; the sensor id from
  ``sensor=`` or the file name) or long format (a ``sensor_id`` column, then
  either field columns or ``field`` + ``value``). Timestamp columns may be
  called ``ts``, ``timestamp``, ``time``, ``datetime`` or ``dateTime``;
  values are RFC 3339 / ISO 8601 or epoch seconds/milliseconds. A time
  without an offset (``2025-08-16T00:00:00``) needs an explicit ``tz``:
  nothing is guessed. Empty or non-numeric cells are skipped (exports mark
  gaps that way), as are rows before a reading of the same sensor.
* :func:`from_parquet` -- the same layouts in Parquet files (typed timestamps
  too; pyarrow, the ``parquet`` extra).
* :func:`from_simulation` -- a simulator scenario, with its labels.
* :func:`labels_from_csv` -- ``sensor_id,label,start,end`` (what
  ``cityeye simulate --labels`` writes).
* ``evaluation/backtest/remote.py`` -- a Kafka topic time range, an InfluxDB query.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cityeye.contracts import Reading, kind_fields
from cityeye.kinds import declared
from cityeye.errors import ConfigError
from cityeye.sensor_registry import SensorRegistry
from detectors.base import finite_value

__all__ = ["Dataset", "Event", "DataError", "from_csv", "from_parquet", "from_simulation", "labels_from_csv", "parse_time",
           "main_field"]

TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "datetime_utc", "date_time")


def main_field(kind: str) -> str:
    """The field a single ``value`` column means and the report plots: the kind's declared ``main_field``."""
    spec = declared().get(kind)
    return spec.main_field if spec is not None else ""


class DataError(ConfigError):
    """Data that cannot be read as readings (names the file and row)."""


@dataclass(frozen=True)
class Event:
    """A labelled event: ``label`` at ``sensor_id`` from ``start`` to ``end`` (epoch seconds)."""

    sensor_id: str
    label: str
    start: float
    end: float


@dataclass
class Dataset:
    registry: SensorRegistry
    readings: dict[str, list[Reading]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    source: str = ""

    def add(self, reading: Reading) -> None:
        self.readings.setdefault(reading.sensor_id, []).append(reading)

    def sort(self) -> "Dataset":
        for rows in self.readings.values():
            rows.sort(key=lambda r: r.ts)
        self.events.sort(key=lambda e: (e.start, e.sensor_id))
        return self

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.readings.values())

    def span(self) -> tuple[float, float]:
        starts = [v[0].ts for v in self.readings.values() if v]
        ends = [v[-1].ts for v in self.readings.values() if v]
        return (min(starts), max(ends)) if starts else (0.0, 0.0)


def parse_time(cell: Any, tz: ZoneInfo | None, where: str) -> float:
    """Epoch seconds of a timestamp cell (text, a number, or a datetime); a time without offset needs ``tz``."""
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        cell = repr(cell)
    if not isinstance(cell, datetime):
        s = (cell or "").strip()
        try:
            number = float(s)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            return number / 1000.0 if number > 1e11 else number
        try:
            cell = datetime.fromisoformat(s.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            raise DataError(f"{where}: {s[:40]!r} is not a timestamp (ISO 8601 or epoch seconds)") from None
    if cell.tzinfo is None:
        if tz is None:
            raise DataError(f"{where}: {cell.isoformat()[:40]!r} has no UTC offset; say which time zone the data is "
                            "in (--tz Europe/London, --tz Asia/Shanghai, --tz UTC)")
        cell = cell.replace(tzinfo=tz)
    return cell.timestamp()


def _zone(tz: str | None) -> ZoneInfo | None:
    if not tz:
        return None
    try:
        return ZoneInfo("UTC" if tz.upper() == "UTC" else tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(f"unknown time zone {tz!r} (use an IANA name such as Asia/Shanghai)") from None


def _time_column(header: list[str], where: str) -> str:
    for name in header:
        if name.strip().lower() in TIME_COLUMNS:
            return name
    raise DataError(f"{where}: no timestamp column (one of {', '.join(TIME_COLUMNS)}) in {header}")


def _number(cell: Any) -> float | None:
    """A cell as a finite float, or None (empty, text, NaN, a bool): the checks' own reading of a value."""
    return finite_value({"v": cell}, "v")


def _add_rows(ds: Dataset, rows: Iterable[dict[str, Any]], header: list[str], where: str, zone: ZoneInfo | None,
              sensor: str | None, default_sensor: str) -> None:
    """Readings from table rows (CSV or Parquet): long format with ``sensor_id``, or one sensor's table."""
    time_col = _time_column(header, where)
    long_format = "sensor_id" in header
    for n, row in enumerate(rows, start=2):
        at = f"{where}:{n}"
        sid = str(row["sensor_id"]) if long_format else (sensor or default_sensor)
        meta = ds.registry.get(sid)
        if meta is None:
            raise DataError(f"{at}: sensor {sid!r} is not in the registry {ds.registry.source}")
        values = _values(row, header, meta.kind, time_col)
        if not values:
            continue
        t = parse_time(row[time_col], zone, at)
        ds.add(Reading(sid, meta.kind, meta.district, t, values, t, ""))


def from_csv(paths: Iterable[str | Path], registry: SensorRegistry, tz: str | None = None,
             sensor: str | None = None, dataset: Dataset | None = None) -> Dataset:
    """Readings from CSV files (see the module docstring); sensors must be in ``registry``."""
    zone = _zone(tz)
    ds = dataset or Dataset(registry, source="csv")
    for path in map(Path, paths):
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                rows = csv.DictReader(fh)
                _add_rows(ds, rows, list(rows.fieldnames or []), str(path), zone, sensor, path.stem)
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text") from None
    return ds.sort()


def from_parquet(paths: Iterable[str | Path], registry: SensorRegistry, tz: str | None = None,
                 sensor: str | None = None, dataset: Dataset | None = None) -> Dataset:
    """Readings from Parquet files, laid out as the CSV files are (pyarrow: ``pip install cityeye[parquet]``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'cityeye[parquet]'") from None
    zone = _zone(tz)
    ds = dataset or Dataset(registry, source="parquet")
    for path in map(Path, paths):
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: cannot read as Parquet: {exc}") from None
        _add_rows(ds, table.to_pylist(), list(table.column_names), str(path), zone, sensor, path.stem)
    return ds.sort()


def _values(row: dict[str, str], header: list[str], kind: str, time_col: str) -> dict[str, float]:
    if "field" in header and "value" in header:
        v = _number(row.get("value"))
        return {row["field"]: v} if v is not None and row.get("field") else {}
    known = kind_fields(kind)
    out = {}
    for col in header:
        if col in (time_col, "sensor_id"):
            continue
        name = (main_field(kind) or col) if col == "value" else col
        if name in known:
            v = _number(row.get(col))
            if v is not None:
                out[name] = v
    return out


def labels_from_csv(path: str | Path, tz: str | None = None) -> list[Event]:
    """Labelled events from ``sensor_id,label,start,end`` rows."""
    zone = _zone(tz)
    out = []
    with Path(path).open(newline="", encoding="utf-8-sig") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path}:{n}"
            try:
                out.append(Event(row["sensor_id"], row.get("label", "event"), parse_time(row["start"], zone, where),
                                 parse_time(row["end"], zone, where)))
            except KeyError as exc:
                raise DataError(f"{where}: missing column {exc}") from None
    return out


def from_simulation(registry: SensorRegistry, scenario: str, seed: int, start: float, duration_h: float) -> Dataset:
    """A simulator scenario's readings and labels (deterministic for a seed)."""
    from simulators.common import Clock
    from simulators.simulation import simulate

    readings, labels = simulate(registry, scenario, seed, Clock(start, duration_h))
    ds = Dataset(registry, source=f"simulation {scenario} seed {seed}")
    for r in readings:
        ds.add(Reading(r.sensor_id, r.kind, r.district, r.ts, dict(r.values), r.ts, ""))
    ds.events = [Event(lab.sensor_id, lab.label, lab.start, lab.end) for lab in labels]
    return ds.sort()
