"""Signing in: argon2 password hashes, session tokens, who sees which case.

People are declared in the org file (:class:`cases.org.Person`); their
password hashes (argon2id, argon2-cffi) live in the database's ``users``
table, set with ``cityeye cases passwd``. A session token is 32 random
bytes; only its SHA-256 is stored. Errors never say whether the user or the
password was wrong, and never contain either.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update

from cases.errors import AuthError
from cases.org import Org, Person
from cases.store import SESSIONS, USERS, CaseStore

__all__ = ["Authenticator", "can_see", "SESSION_TTL_S", "MIN_PASSWORD"]

SESSION_TTL_S = 12 * 3600.0
MIN_PASSWORD = 10
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Passwords and sessions of the org's people, kept in the store."""

    def __init__(self, store: CaseStore, org: Org, ttl_s: float = SESSION_TTL_S) -> None:
        self.store = store
        self.org = org
        self.ttl_s = ttl_s

    def set_password(self, username: str, password: str, now: float) -> None:
        if username not in self.org.people:
            raise AuthError(f"{username!r} is not a person of the org file")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")
        digest = _HASHER.hash(password)
        with self.store.transaction() as conn:
            known = conn.execute(select(USERS.c.username).where(USERS.c.username == username)).first()
            if known:
                conn.execute(update(USERS).where(USERS.c.username == username)
                             .values(password_hash=digest, updated_at=now))
            else:
                conn.execute(insert(USERS).values(username=username, password_hash=digest, updated_at=now))
            conn.execute(delete(SESSIONS).where(SESSIONS.c.username == username))

    def sign_in(self, username: str, password: str, now: float) -> str:
        """A new session token, or :class:`AuthError`."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(USERS.c.password_hash).where(USERS.c.username == username)).first()
        try:
            _HASHER.verify(row[0] if row else _DUMMY_HASH, password)
            ok = row is not None and username in self.org.people
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise AuthError("wrong username or password")
        token = secrets.token_urlsafe(32)
        with self.store.transaction() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at < now))
            conn.execute(insert(SESSIONS).values(token_sha256=_digest(token), username=username, created_at=now,
                                                 expires_at=now + self.ttl_s))
        return token

    def person(self, token: str | None, now: float) -> Person:
        """The person a session token belongs to, or :class:`AuthError`."""
        if not token:
            raise AuthError("sign in first (Authorization: Bearer <token>)")
        with self.store.engine.connect() as conn:
            row = conn.execute(select(SESSIONS.c.username, SESSIONS.c.expires_at)
                               .where(SESSIONS.c.token_sha256 == _digest(token))).first()
        if row is None or row[1] < now or row[0] not in self.org.people:
            raise AuthError("the session is unknown or has expired: sign in again")
        return self.org.people[row[0]]

    def sign_out(self, token: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.token_sha256 == _digest(token)))


def can_see(org: Org, person: Person, case: dict[str, Any]) -> bool:
    """A handler sees its department's cases; everyone else the cases inside their unit."""
    if person.role == "handler":
        return case.get("department") == person.department
    return org.within(case["unit"], person.unit)
