"""The routing tree: which receivers hear about an alert, grouped how, how often.

As Alertmanager's ``route``: an alert enters at the root and descends into
the first child route whose matchers all match (``match``: equality,
``match_re``: anchored regex, ``matchers``: ``label<op>value`` strings);
with ``continue: true`` on a matching child, later siblings are tried too.
If no child matches, the node itself handles the alert. ``group_by``,
``group_wait``, ``group_interval``, ``repeat_interval``, ``receiver`` and
``escalation`` are inherited from the parent unless set.

Labels available to matchers: ``sensor`` (= ``sensor_id``), ``kind``,
``district``, ``rule``, ``severity``, ``state``, ``alert_id`` and the
event's own labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alerts.config import RouteConfig
from alerts.pipeline.matchers import Matcher, matchers_from_specs, matches_all

__all__ = ["Route", "RouteTree", "DEFAULT_GROUP_BY", "DEFAULT_TIMINGS", "group_key"]

DEFAULT_GROUP_BY = ["district", "kind"]
#: Alertmanager's defaults: group_wait 30 s, group_interval 5 min, repeat_interval 4 h
DEFAULT_TIMINGS = {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 4 * 3600.0}


@dataclass
class Route:
    """A routing node with its inherited settings resolved."""

    id: str
    receiver: str
    matchers: list[Matcher]
    continue_: bool
    group_by: list[str]
    group_wait: float
    group_interval: float
    repeat_interval: float
    escalation: list[str]
    children: list["Route"] = field(default_factory=list)

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        return {k: labels.get(k, "") for k in self.group_by}


def group_key(route: Route, labels: dict[str, str]) -> str:
    """Stable key of the aggregation group ``labels`` fall in under ``route``."""
    parts = ",".join(f"{k}={v}" for k, v in sorted(route.group_labels(labels).items()))
    return f"{route.id}:{{{parts}}}"


class RouteTree:
    """The resolved tree; :meth:`match` gives the routes handling a label set."""

    def __init__(self, root: RouteConfig) -> None:
        self.root = self._build(root, "0", None)
        self.by_id: dict[str, Route] = {}
        self._index(self.root)

    def _build(self, cfg: RouteConfig, rid: str, parent: Route | None) -> Route:
        def pick(name: str):
            own = getattr(cfg, name)
            if own is not None:
                return own
            return getattr(parent, name) if parent is not None else DEFAULT_TIMINGS.get(name)

        matchers = [Matcher(k, "=", v) for k, v in cfg.match.items()]
        matchers += [Matcher(k, "=~", v) for k, v in cfg.match_re.items()]
        matchers += matchers_from_specs(cfg.matchers)
        route = Route(
            id=rid,
            receiver=cfg.receiver or (parent.receiver if parent else ""),
            matchers=matchers,
            continue_=cfg.continue_,
            group_by=list(cfg.group_by if cfg.group_by is not None else (parent.group_by if parent else DEFAULT_GROUP_BY)),
            group_wait=pick("group_wait"),
            group_interval=pick("group_interval"),
            repeat_interval=pick("repeat_interval"),
            escalation=list(cfg.escalation if cfg.escalation is not None else (parent.escalation if parent else [])),
        )
        route.children = [self._build(c, f"{rid}.{i}", route) for i, c in enumerate(cfg.routes)]
        return route

    def _index(self, route: Route) -> None:
        self.by_id[route.id] = route
        for child in route.children:
            self._index(child)

    def match(self, labels: dict[str, str]) -> list[Route]:
        """Routes (leaf-most matching nodes) that handle ``labels``; never empty."""
        return self._match(self.root, labels)

    def _match(self, node: Route, labels: dict[str, str]) -> list[Route]:
        out: list[Route] = []
        for child in node.children:
            if not matches_all(child.matchers, labels):
                continue
            out += self._match(child, labels)
            if not child.continue_:
                break
        return out or [node]
