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

from typing import Any

from pydantic import ValidationError

from cityeye.errors import CityEyeError, ConfigError
from cityeye.yaml_source import line_of

__all__ = ["OrgError", "CaseError", "TransitionError", "ForbiddenError", "UnknownCaseError", "AuthError",
           "BadRequestError", "org_error"]


class OrgError(ConfigError):
    """Invalid organisation or cases configuration."""


def org_error(exc: ValidationError, root: Any, source: str) -> OrgError:
    """The first problem of a refused configuration file, naming the file, the line and the field."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "file"
    return OrgError(f"{source}:{line_of(root, loc)}: {where}: {err['msg'].removeprefix('Value error, ')}")


class CaseError(CityEyeError):
    """A case request that cannot be done; ``status`` is its HTTP status (a class keyword)."""

    status = 400

    def __init_subclass__(cls, status: int = 400, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.status = status


class TransitionError(CaseError, status=409):
    """The action is not allowed in the case's state."""


class ForbiddenError(CaseError, status=403):
    """The user may not do this."""


class UnknownCaseError(CaseError, status=404):
    """No such case (or the user may not see it)."""


class AuthError(CaseError, status=401):
    """Not signed in, or the credentials are wrong."""


class BadRequestError(CaseError, status=400):
    """The request lacks what the action needs."""
