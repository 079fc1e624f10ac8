"""The rules in force in a worker, applied again when their file changes.

:class:`LiveRules` holds the rulebook built from the built-in rules and the
settings' ``rules`` file. :meth:`LiveRules.reload` (called by the worker
every ``rules_check_s`` and at once on SIGHUP) reads the file again; when
its content changed it builds and checks the new rulebook against the
registry:

* valid: it becomes the rules in force, and the worker applies it to every
  sensor (:meth:`streams.sensor_engine.SensorEngine.rebuild_checks`): checks
  whose rule did not change keep their state, changed ones start fresh;
* invalid: the error is logged once (file, line and field) and the rules in
  force stay as they were.

Workers of one group that read the same file (a shared volume, a config
map) change together within ``rules_check_s``. Every alert event carries the
``rules_version`` (content hash) it was raised under.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from cityeye.errors import CityEyeError
from cityeye.sensor_registry import SensorRegistry
from detectors.base import Check
from detectors.rulebook import Rulebook, load_rulebook

__all__ = ["LiveRules"]

log = logging.getLogger(__name__)


class LiveRules:
    """The rulebook in force; ``checks_for`` is the worker's checks factory."""

    def __init__(self, path: str | None, registry: SensorRegistry) -> None:
        self.path = Path(path) if path else None
        self.registry = registry
        self._digest = self._file_digest()
        self.rulebook: Rulebook = self._load()  # a bad file at start-up stops the worker with its error
        self.log_sampling_notes()

    @property
    def version(self) -> str:
        return self.rulebook.version

    def checks_for(self, sensor: Any) -> list[Check]:
        return self.rulebook.checks_for(sensor)

    def _file_digest(self) -> str | None:
        if self.path is None:
            return None
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return "unreadable"

    def _load(self) -> Rulebook:
        rulebook = load_rulebook(self.path)
        rulebook.check_registry(self.registry)
        return rulebook

    def reload(self) -> bool:
        """Read the file again; True if changed rules are now in force (see the module docstring)."""
        digest = self._file_digest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            rulebook = self._load()
        except CityEyeError as exc:
            log.error("rules file changed but refused, the rules in force stay (version %s): %s", self.version, exc)
            return False
        if rulebook.version == self.version:
            return False
        old, self.rulebook = self.version, rulebook
        log.warning("rules reloaded from %s: version %s -> %s", self.path, old, self.version)
        self.log_sampling_notes()
        return True

    def log_sampling_notes(self) -> None:
        """Say at start-up, per sensor, what a check cannot do at its sampling (or why it is not built)."""
        for sensor in self.registry:
            for eff, built in self.rulebook.build(sensor):
                for note in built.notes:  # what cannot work is a warning; what the sampling changed, information
                    level = logging.WARNING if "never" in note or note.startswith("not built") else logging.INFO
                    log.log(level, "sensor %s, %s: %s", sensor.id, eff.name, note)
