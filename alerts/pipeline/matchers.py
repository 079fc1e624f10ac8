"""Label matchers, as Alertmanager's: ``label op value`` with ``=``, ``!=``, ``=~``, ``!~``.

Routing (which route handles an alert), silences and maintenance windows
(which alerts are muted) and inhibit rules (which alerts mute which) all
select alerts by matchers over :meth:`~alerts.model.Alert.label_set`.
Regular expressions are anchored (``stale`` matches ``stale`` only, not
``not_stale_x``), and a missing label matches as the empty string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from alerts.config import MatcherSpec

__all__ = ["Matcher", "matchers_from_specs", "matches_all"]


@lru_cache(maxsize=512)
def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(f"^(?:{pattern})$")


@dataclass(frozen=True)
class Matcher:
    """``label op value``; a missing label matches as the empty string (as Alertmanager)."""

    label: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"matcher op {self.op!r} must be one of =, !=, =~, !~")
        if self.op in ("=~", "!~"):
            try:
                _anchored(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.label}: bad regular expression: {exc}") from None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = _anchored(self.value).match(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value!r}"


def matchers_from_specs(specs: list[MatcherSpec] | list[dict[str, Any]]) -> list[Matcher]:
    """Matchers from the configuration's or the API's ``{label, op, value}`` specs (op defaults to ``=``)."""
    out = []
    for s in specs:
        d = s.model_dump() if isinstance(s, MatcherSpec) else s
        out.append(Matcher(str(d["label"]), str(d.get("op", "=")), str(d["value"])))
    return out


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    """Whether every matcher matches ``labels`` (True for no matchers)."""
    return all(m.matches(labels) for m in matchers)
