"""The case workflow as a pure transition table (docs/cases.md, "Workflow").

:func:`plan` takes a case's state, the action, the actor's role and what the
request carries, and returns the :class:`Step` to apply, or raises
:class:`~cases.errors.TransitionError` (HTTP 409) / :class:`ForbiddenError`
(403) / :class:`BadRequestError` (400). No I/O, no clock.

>>> plan("filed", "dispatch", "dispatcher", {"department": "water"}).to_state
'dispatched'
>>> plan("filed", "accept", "handler", {}, case_id="C-1")
Traceback (most recent call last):
...
cases.errors.TransitionError: case C-1 is 'filed': 'accept' needs state dispatched
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cases.errors import BadRequestError, ForbiddenError, TransitionError

__all__ = ["STATES", "OPEN_STATES", "ACTIONS", "Transition", "TRANSITIONS", "Step", "plan", "STAGE_OF_STATE",
           "actions_for"]

STATES = ("filed", "dispatched", "accepted", "returned", "on_site", "handled", "verified", "closed", "suspended")
OPEN_STATES = tuple(s for s in STATES if s != "closed")
#: the SLA stage a case is in while in a state (``None``: no clock runs)
STAGE_OF_STATE: dict[str, str | None] = {
    "filed": "dispatch", "returned": "dispatch", "dispatched": "accept", "accepted": "arrive",
    "on_site": "handle", "handled": "verify", "verified": None, "closed": None, "suspended": None,
}
SUSPENDABLE = ("filed", "dispatched", "accepted", "returned", "on_site", "handled")
MANAGERS = ("dispatcher", "head_of_shift")


@dataclass(frozen=True)
class Transition:
    """One row of the table: ``action`` from ``sources`` to ``target`` by ``roles``, needing ``needs``."""

    action: str
    sources: tuple[str, ...]
    #: the next state; ``None`` = unchanged (a note), ``"@resume"`` = the state it was suspended from
    target: str | None
    roles: tuple[str, ...]
    needs: tuple[str, ...] = ()
    #: whether only a handler of the case's department may do it
    own_department: bool = False


TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    Transition("dispatch", ("filed", "returned"), "dispatched", (*MANAGERS, "system"), ("department",)),
    Transition("accept", ("dispatched",), "accepted", ("handler",), own_department=True),
    Transition("return", ("dispatched",), "returned", ("handler",), ("reason",), own_department=True),
    Transition("arrive", ("accepted",), "on_site", ("handler",), own_department=True),
    Transition("report", ("on_site",), "handled", ("handler",), ("report",), own_department=True),
    Transition("verify", ("handled",), "verified", ("supervisor",)),
    Transition("reject", ("handled",), "on_site", ("supervisor",), ("reason",)),
    Transition("close", ("verified",), "closed", MANAGERS),
    Transition("suspend", SUSPENDABLE, "suspended", ("head_of_shift",), ("reason",)),
    Transition("resume", ("suspended",), "@resume", ("head_of_shift",)),
    Transition("note", OPEN_STATES + ("closed",), None,
               ("duty_officer", "dispatcher", "handler", "supervisor", "head_of_shift"), ("note",)),
)}
ACTIONS = tuple(TRANSITIONS)
FILING_ROLES = ("duty_officer", "dispatcher", "supervisor", "head_of_shift", "system")


@dataclass(frozen=True)
class Step:
    """What applying an allowed action does."""

    action: str
    from_state: str
    to_state: str
    #: the SLA stage left (its deadline is judged), or None
    stage_left: str | None
    #: the SLA stage entered (a new deadline starts), or None
    stage_entered: str | None


def plan(state: str, action: str, role: str, request: Mapping[str, Any], *, case_id: str = "?",
         suspended_from: str | None = None, own_department: bool = True) -> Step:
    """The step ``action`` takes from ``state`` for ``role``, or the error saying why not."""
    t = TRANSITIONS.get(action)
    if t is None:
        raise BadRequestError(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
    if role not in t.roles:
        raise ForbiddenError(f"'{action}' is for {', '.join(t.roles)}, not {role}")
    if t.own_department and not own_department:
        raise ForbiddenError(f"case {case_id} is another department's: only its handlers may '{action}'")
    if state not in t.sources:
        raise TransitionError(f"case {case_id} is '{state}': '{action}' needs state {' or '.join(t.sources)}")
    missing = [n for n in t.needs if not str(request.get(n) or "").strip()]
    if missing:
        raise BadRequestError(f"'{action}' needs {', '.join(missing)}")
    if t.target is None:
        target = state
    elif t.target == "@resume":
        target = suspended_from or "filed"
    else:
        target = t.target
    changed = target != state
    return Step(action, state, target,
                STAGE_OF_STATE[state] if changed else None,
                STAGE_OF_STATE[target] if changed else None)


def actions_for(state: str, role: str, own_department: bool = True) -> list[str]:
    """The actions ``role`` may take on a case in ``state`` (the console's buttons)."""
    return [t.action for t in TRANSITIONS.values()
            if state in t.sources and role in t.roles and (own_department or not t.own_department)]
