"""Alert transitions: raise, escalate / de-escalate, keep-firing-for, resolve, flapping.

:class:`Lifecycle` turns an :class:`~cityeye.contracts.AlertEvent` into
changes of the one active :class:`~alerts.model.Alert` for its sensor +
rule, and :meth:`Lifecycle.tick` makes pending resolves take effect.

* A firing event with no active alert raises one; a firing event for an
  active alert updates it (severity up = ``escalated``, down =
  ``de-escalated``; an escalation clears an acknowledgement, because the
  new severity has not been seen by anyone).
* A resolved event starts the keep-firing-for delay (Prometheus'
  ``keep_firing_for``): the alert stays firing and resolves only if no
  firing event arrives before ``resolve_at``. A firing event in between is
  a ``refired`` and cancels the pending resolve.
* Flapping as Kapacitor's ``.flapping(low, high)``: over the last
  ``flap_history`` observed states, the weighted fraction of state changes
  (recent changes weigh more, 0.8 → 1.2) is computed; above ``high`` the
  alert enters flapping, below ``low`` it leaves. While flapping the alert
  is recorded but not notified, apart from one ``flapping`` notice.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.config import TimingsConfig
from alerts.model import Alert
from cityeye.contracts import SEVERITY_RANK, AlertEvent

__all__ = ["Transition", "Lifecycle", "flap_ratio"]

#: event ids remembered per alert for de-duplication of re-delivered events
_SEEN_EVENTS = 64


@dataclass
class Transition:
    """Something that happened to an alert, for the timeline, history and grouping."""

    alert: Alert
    action: str
    detail: str = ""
    actor: str = "system"


def flap_ratio(history: list[int]) -> float:
    """Weighted fraction of state changes in ``history`` (0.0 … 1.0)."""
    n = len(history)
    if n < 2:
        return 0.0
    total = weights = 0.0
    for i in range(1, n):
        w = 0.8 + 0.4 * (i - 1) / max(1, n - 2)
        weights += w
        if history[i] != history[i - 1]:
            total += w
    return total / weights


class Lifecycle:
    """Applies events and timers to alerts according to :class:`TimingsConfig`."""

    def __init__(self, timings: TimingsConfig) -> None:
        self.t = timings
        self.min_flap_states = max(4, timings.flap_history // 2)

    def _escalating(self, severity: str) -> bool:
        return severity in self.t.escalate_severities

    def apply(self, current: Alert | None, ev: AlertEvent, now: float) -> tuple[Alert | None, list[Transition]]:
        """Apply ``ev`` to the active alert ``current`` (None if there is none).

        Returns the alert to keep (new, updated, or ``current`` unchanged)
        and the transitions that happened, in order.
        """
        if current is not None and not current.active:
            current = None
        if current is not None and ev.event_id in current.seen_events:
            return current, []
        if ev.state == "firing":
            if current is None:
                alert = Alert.from_event(ev)
                alert.escalating_since = now if self._escalating(ev.severity) else None
                out = [Transition(alert, "raised", f"{ev.severity}: {ev.message}")]
                alert.state_history = [1]
            else:
                alert, out = current, self._update_firing(current, ev, now)
        else:
            if current is None:
                return None, []
            alert, out = current, self._start_resolve(current, ev, now)
        self._remember(alert, ev.event_id)
        out += self._check_flapping(alert)
        for tr in out:
            alert.record(now, tr.action, actor=tr.actor, detail=tr.detail)
        if alert.resolve_at is not None and alert.resolve_at <= now:
            out += self.tick(alert, now)
        return alert, out

    def _remember(self, alert: Alert, event_id: str) -> None:
        alert.seen_events.append(event_id)
        del alert.seen_events[:-_SEEN_EVENTS]

    def _observe(self, alert: Alert, state: int) -> None:
        alert.state_history.append(state)
        del alert.state_history[: -self.t.flap_history]

    def _update_firing(self, alert: Alert, ev: AlertEvent, now: float) -> list[Transition]:
        out: list[Transition] = []
        if alert.resolve_at is not None:
            alert.resolve_at = None
            self._observe(alert, 1)
            out.append(Transition(alert, "refired", "firing again within keep-firing-for"))
        old = alert.severity
        if ev.severity != old:
            up = SEVERITY_RANK[ev.severity] > SEVERITY_RANK[old]
            alert.severity = ev.severity
            detail = f"{old} -> {ev.severity}"
            if up and alert.acknowledged_by:
                detail += f" (acknowledgement by {alert.acknowledged_by} cleared)"
                alert.acknowledged_by = alert.acknowledged_at = None
            if not self._escalating(ev.severity):
                alert.escalating_since = None
            elif alert.escalating_since is None:
                alert.escalating_since = now
            out.append(Transition(alert, "escalated" if up else "de-escalated", detail))
        alert.value, alert.threshold, alert.message = ev.value, ev.threshold, ev.message
        alert.updated_at = max(alert.updated_at, ev.updated_at)
        alert.labels.update(ev.labels)
        return out

    def _start_resolve(self, alert: Alert, ev: AlertEvent, now: float) -> list[Transition]:
        alert.value, alert.updated_at = ev.value, max(alert.updated_at, ev.updated_at)
        if alert.resolve_at is not None:
            return []
        self._observe(alert, 0)
        alert.resolve_at = now + self.t.keep_firing_for
        return [Transition(alert, "resolve_pending", f"resolves in {self.t.keep_firing_for:g} s unless it fires again")]

    def _check_flapping(self, alert: Alert) -> list[Transition]:
        if len(alert.state_history) < self.min_flap_states:
            return []
        ratio = flap_ratio(alert.state_history)
        if not alert.flapping and ratio > self.t.flap_high:
            alert.flapping = True
            return [Transition(alert, "flapping", f"state change ratio {ratio:.2f} > {self.t.flap_high:g}")]
        if alert.flapping and ratio < self.t.flap_low:
            alert.flapping = False
            return [Transition(alert, "flapping_ended", f"state change ratio {ratio:.2f} < {self.t.flap_low:g}")]
        return []

    def tick(self, alert: Alert, now: float) -> list[Transition]:
        """Make a due pending resolve take effect."""
        if not alert.active or alert.resolve_at is None or now < alert.resolve_at:
            return []
        alert.state = "resolved"
        alert.ended_at = alert.resolve_at
        alert.resolve_at = None
        alert.escalating_since = None
        alert.flapping = False
        tr = Transition(alert, "resolved", "no firing within keep-firing-for")
        alert.record(now, tr.action, detail=tr.detail)
        return [tr]

    def resolve_manually(self, alert: Alert, actor: str, now: float, comment: str = "") -> list[Transition]:
        """An officer closes the alert (the sensor's next firing event raises a new one)."""
        if not alert.active:
            return []
        alert.resolve_at = now
        out = self.tick(alert, now)
        for tr in out:
            tr.actor = actor
            tr.detail = f"resolved by {actor}" + (f": {comment}" if comment else "")
            alert.timeline[-1].actor, alert.timeline[-1].detail = actor, tr.detail
        return out
