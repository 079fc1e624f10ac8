"""What the dispatch pipeline needs of a state store: the port the runtime's store plugs into.

The pipeline (``dispatch_engine.py``, ``stages.py``) writes every change
through to a store within the caller's transaction. It needs only these
calls, so it depends on this protocol, not on the runtime's SQLite
:class:`~alerts.runtime.store.Store` (which implements it, as does any
store a backtest or a test provides). Rows are plain JSON-able dicts.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["StateStore"]


class StateStore(Protocol):
    def active_alerts(self) -> list[dict[str, Any]]: ...

    def get_alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def save_alert(self, d: dict[str, Any]) -> None: ...

    def groups(self) -> list[dict[str, Any]]: ...

    def save_group(self, key: str, d: dict[str, Any]) -> None: ...

    def delete_group(self, key: str) -> None: ...

    def silences(self) -> list[dict[str, Any]]: ...

    def save_silence(self, d: dict[str, Any]) -> None: ...

    def outbox_add(self, nid: str, receiver: str, body: dict[str, Any], now: float) -> bool:
        """Queue a notification; False if that id is already queued or delivered."""

    def outbox_size(self) -> int: ...

    def history_add(self, records: list[dict[str, Any]]) -> None: ...
