"""The cases room's exceptions, under CityEye's one root (:mod:`cityeye.errors`).

::

    CityEyeError
    ├── ConfigError
    │   └── OrgError          invalid org / cases configuration (file, line, field)
    └── CaseError
        ├── TransitionError   an action the case's state does not allow (HTTP 409)
        ├── ForbiddenError    the user's role or department may not do it (HTTP 403)
        ├── UnknownCaseError  no such case, or not visible to the user (HTTP 404)
        ├── AuthError         not signed in, bad password or session (HTTP 401)
        └── BadRequestError   a request missing what the action needs (HTTP 400)
"""

from __future__ import annotations

from cityeye.errors import CityEyeError, ConfigError

__all__ = ["OrgError", "CaseError", "TransitionError", "ForbiddenError", "UnknownCaseError", "AuthError",
           "BadRequestError"]


class OrgError(ConfigError):
    """Invalid organisation or cases configuration."""


class CaseError(CityEyeError):
    """A case request that cannot be done; ``status`` is its HTTP status."""

    status = 400


class TransitionError(CaseError):
    """The action is not allowed in the case's state."""

    status = 409


class ForbiddenError(CaseError):
    """The user may not do this."""

    status = 403


class UnknownCaseError(CaseError):
    """No such case (or the user may not see it)."""

    status = 404


class AuthError(CaseError):
    """Not signed in, or the credentials are wrong."""

    status = 401


class BadRequestError(CaseError):
    """The request lacks what the action needs."""

    status = 400
