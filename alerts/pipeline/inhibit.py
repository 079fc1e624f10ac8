"""Inhibition: an alert that makes others pointless mutes them.

As Alertmanager's ``inhibit_rules``: a firing *source* alert matching
``source_matchers`` inhibits every other firing *target* alert matching
``target_matchers`` whose ``equal`` labels have the same values. The
example configuration has the two CityEye rules:

* a stale/offline alert of a sensor (rule name containing ``stale``)
  inhibits that sensor's other alerts (``equal: [sensor]``);
* a red alert inhibits lower-severity ones in its group
  (``equal: [district, kind]``, the default group-by labels).

:class:`Inhibitor` is the muter: an inhibited alert is recorded (status
``inhibited``) but not notified.
An alert never inhibits itself, and an alert that is itself inhibited or
silenced still inhibits others (Alertmanager's semantics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from alerts.config import InhibitRuleConfig
from alerts.model import Alert
from alerts.pipeline.matchers import Matcher, matchers_from_specs, matches_all

__all__ = ["InhibitRule", "Inhibitor"]


@dataclass
class InhibitRule:
    name: str
    source: list[Matcher]
    target: list[Matcher]
    equal: list[str]

    @classmethod
    def from_config(cls, cfg: InhibitRuleConfig, index: int) -> "InhibitRule":
        return cls(cfg.name or f"inhibit_rules.{index}", matchers_from_specs(cfg.source_matchers),
                   matchers_from_specs(cfg.target_matchers), list(cfg.equal))

    def inhibits(self, source: dict[str, str], target: dict[str, str]) -> bool:
        return (
            matches_all(self.source, source)
            and matches_all(self.target, target)
            and all(source.get(label, "") == target.get(label, "") for label in self.equal)
        )


class Inhibitor:
    """The inhibit rules over the active alerts, as a :class:`~alerts.pipeline.muting.Muter`.

    ``active`` gives the current active alerts (the engine's); the reasons
    are the ids of the firing alerts that inhibit the target, sorted.
    """

    field, muted, unmuted = "inhibited_by", "inhibited", "uninhibited"

    def __init__(self, rules: list[InhibitRuleConfig], active: Callable[[], Iterable[Alert]]) -> None:
        self.rules = [InhibitRule.from_config(r, i) for i, r in enumerate(rules)]
        self.active = active

    def mutes(self, target: Alert, now: float) -> list[str]:
        """Ids of the firing alerts that inhibit ``target`` (empty: not inhibited)."""
        if not self.rules or not target.active:
            return []
        t_labels = target.label_set()
        out: list[str] = []
        for source in self.active():
            if source.alert_id == target.alert_id or not source.active:
                continue
            s_labels = source.label_set()
            if any(rule.inhibits(s_labels, t_labels) for rule in self.rules):
                out.append(source.alert_id)
        return sorted(out)

    def mutes_others(self, alert: Alert) -> bool:
        """Whether ``alert`` may be a source of some rule, or inhibits another alert now."""
        if not self.rules:
            return False
        labels = alert.label_set()
        if any(matches_all(rule.source, labels) for rule in self.rules):
            return True
        return any(alert.alert_id in other.inhibited_by for other in self.active())
