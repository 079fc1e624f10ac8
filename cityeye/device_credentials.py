"""MQTT credentials of the devices and the services: one YAML file, mode 0600.

::

    # CityEye MQTT credentials: secret, keep mode 0600
    devices:                       # username = sensor id
      wl-huangpu-01: 9mF3...
    services:                      # the CityEye processes' own accounts
      cityeye-gateway: Xk2...
      cityeye-notifier: p0Q...

:func:`load_or_create` reads the file (refusing one that others can read),
adds a random password (:func:`secrets.token_urlsafe`) for every device of
the registry and every service account that has none, and writes it back
0600 when it added any. Passwords given in the file are kept as they are:
an operator may supply their own. Passwords are :class:`pydantic.SecretStr`
and never appear in a log line or an error message.

The broker files (Mosquitto's password and ACL files) are generated from
this file and the registry by ``cityeye devices export-acl``
(``ingest/device_access.py``); simulators read it to publish as their
devices (``mqtt.device_credentials``).
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml
from pydantic import SecretStr

from cityeye.errors import ConfigError

__all__ = ["GATEWAY_ACCOUNT", "NOTIFIER_ACCOUNT", "SERVICE_ACCOUNTS", "MqttCredentials", "read_credentials", "load_or_create",
           "write_private"]

#: the gateway's account: the only one that reads ``cityeye/#``
GATEWAY_ACCOUNT = "cityeye-gateway"
#: the dispatcher's MQTT notifier: publishes notifications under ``cityeye/out/#``
NOTIFIER_ACCOUNT = "cityeye-notifier"
SERVICE_ACCOUNTS: tuple[str, ...] = (GATEWAY_ACCOUNT, NOTIFIER_ACCOUNT)

_HEADER = "# CityEye MQTT credentials: secret, keep mode 0600 (cityeye devices export-acl)\n"


@dataclass
class MqttCredentials:
    """Passwords by username: ``devices`` (username = sensor id) and ``services``."""

    devices: dict[str, SecretStr] = field(default_factory=dict)
    services: dict[str, SecretStr] = field(default_factory=dict)

    def password(self, username: str) -> SecretStr | None:
        """The password of a device or service account, or None."""
        return self.devices.get(username) or self.services.get(username)

    def to_yaml(self) -> str:
        plain = {section: {name: pw.get_secret_value() for name, pw in sorted(accounts.items())}
                 for section, accounts in (("devices", self.devices), ("services", self.services))}
        return _HEADER + yaml.safe_dump(plain, sort_keys=False)


def write_private(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), atomically.

    The file is created 0600 before a byte is written (no window in which
    another user could open it) and renamed over the old one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # created 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_credentials(path: str | os.PathLike) -> MqttCredentials:
    """The credentials in ``path``; :class:`ConfigError` if others can read it or it is not the format above."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: credentials file does not exist (cityeye devices export-acl creates it)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path}: credentials file is readable by others (mode {mode:o}); chmod 600 it")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        # the parser's message may quote a line of the file: say where, not what
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: credentials file is not valid YAML{line}") from None
    if not isinstance(data, dict) or set(data) - {"devices", "services"}:
        raise ConfigError(f"{path}: expected the sections 'devices' and 'services' only")
    out = MqttCredentials()
    for section in ("devices", "services"):
        accounts = data.get(section) or {}
        if not isinstance(accounts, dict):
            raise ConfigError(f"{path}: {section} must map usernames to passwords")
        for name, password in accounts.items():
            if not isinstance(password, str) or len(password) < 12:
                raise ConfigError(f"{path}: {section}.{name}: the password must be a string of 12 characters or more")
            getattr(out, section)[str(name)] = SecretStr(password)
    return out


def load_or_create(path: str | os.PathLike, device_ids: Iterable[str],
                   services: Iterable[str] = SERVICE_ACCOUNTS) -> tuple[MqttCredentials, int]:
    """The credentials in ``path`` with a new random password for every account that lacks one.

    Returns the credentials and how many passwords were generated; the file
    is (re)written 0600 only when some were. Raises :class:`ConfigError` for
    a file others can read, or one that is not the format above.
    """
    path = Path(path)
    creds = read_credentials(path) if path.exists() else MqttCredentials()
    added = 0
    for section, names in (("devices", device_ids), ("services", services)):
        accounts = getattr(creds, section)
        for name in names:
            if name not in accounts:
                accounts[name] = SecretStr(secrets.token_urlsafe(24))
                added += 1
    clash = set(creds.devices) & set(creds.services)
    if clash:
        raise ConfigError(f"{path}: a device may not use a service account's name: {', '.join(sorted(clash))}")
    if added or not path.exists():
        write_private(path, creds.to_yaml())
    return creds, added
