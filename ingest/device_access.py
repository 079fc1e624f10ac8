"""Who may publish what: Mosquitto's password and ACL files from the sensor registry.

Every device logs in with its own account (username = sensor id) and may
publish only to its own topic(s): ``cityeye/<district>/<kind>/<sensor_id>``,
its SenML topic ``cityeye/<district>/senml/<sensor_id>`` when the gateway
decodes SenML (:func:`device_templates`), further topic templates given, and
the topics of the vendor mappings of its kind (:func:`mapping_topics`: the
mapping's topic with the device's own id and district filled in; a level
the mapping does not take the sensor id from stays ``+``). A device may subscribe to nothing: a
``#`` subscription of a device receives no message. The services have
their own accounts: the gateway (``cityeye-gateway``) is the only account
that reads ``cityeye/#`` (and ``/cityeye/#``, where malformed topics land); the dispatcher's MQTT notifier
(``cityeye-notifier``) publishes under ``cityeye/out/#``.

:func:`password_file` writes Mosquitto 2's hashed format
(``user:$7$<iterations>$<salt>$<PBKDF2-HMAC-SHA512>``, base64, the format
``mosquitto_passwd`` writes) with :func:`hashlib.pbkdf2_hmac`;
:func:`acl_file` writes ``user``/``topic`` blocks; :func:`broker_auth_conf`
is the matching ``mosquitto.conf`` part: no anonymous clients, and
``use_username_as_clientid`` so a client's id is its username: nobody
without the gateway's password can connect as the gateway or take over its
persistent session.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cityeye.contracts import MQTT_TOPIC_FILTERS
from cityeye.device_credentials import GATEWAY_ACCOUNT, NOTIFIER_ACCOUNT, MqttCredentials, write_private
from cityeye.errors import ConfigError
from cityeye.intake_progress import PROBE_NAMESPACE
from cityeye.config import Settings
from cityeye.sensor_registry import Sensor, SensorRegistry
from ingest.mapping import Mapping

__all__ = ["DEFAULT_TOPIC_TEMPLATE", "SENML_TOPIC_TEMPLATE", "ServiceAccount", "SERVICE_ACLS", "device_topics",
           "device_templates", "mapping_topics", "mosquitto_hash",
           "password_file", "acl_file", "broker_auth_conf", "BrokerFiles", "export_broker_files"]

DEFAULT_TOPIC_TEMPLATE = "cityeye/{district}/{kind}/{sensor_id}"
#: the gateways' intake probe topics (cityeye.intake_progress.probe_topic)
PROBE_FILTER = f"{PROBE_NAMESPACE}/+/probe"
SENML_TOPIC_TEMPLATE = "cityeye/{district}/senml/{sensor_id}"

#: PBKDF2 rounds; mosquitto_passwd's own default is 101, a broker reads the count from each line
PBKDF2_ITERATIONS = 1000


@dataclass(frozen=True)
class ServiceAccount:
    """A CityEye process's MQTT account and the topic filters it may read and write."""

    username: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


SERVICE_ACLS: tuple[ServiceAccount, ...] = (
    # what the gateway subscribes to by default (cityeye.contracts.MQTT_TOPIC_FILTERS): it dead-letters
    # malformed topics instead of never hearing them
    # and its intake probes (ingest/intake_probe.py), which it publishes and reads back itself
    ServiceAccount(GATEWAY_ACCOUNT, read=(*MQTT_TOPIC_FILTERS, PROBE_FILTER), write=(PROBE_FILTER,)),
    ServiceAccount(NOTIFIER_ACCOUNT, write=("cityeye/out/#",)),
)


def device_topics(sensor: Sensor, templates: Iterable[str] = (DEFAULT_TOPIC_TEMPLATE,)) -> list[str]:
    """The topics ``sensor`` may publish to: each template filled in with its id, district and kind."""
    topics = []
    for template in templates:
        topic = template.format(sensor_id=sensor.id, district=sensor.district, kind=sensor.kind)
        if "+" in topic or "#" in topic or not topic.startswith("cityeye/"):
            raise ConfigError(f"topic template {template!r} gives {topic!r}: a device topic is one topic "
                              "under cityeye/, without wildcards")
        if topic not in topics:
            topics.append(topic)
    return topics


def device_templates(settings: Settings) -> list[str]:
    """The topic templates every device gets under ``settings``: its own topic, and its SenML topic when on."""
    return [DEFAULT_TOPIC_TEMPLATE, *([SENML_TOPIC_TEMPLATE] if settings.ingest.senml else [])]


def mapping_topics(mapping: Mapping, sensor: Sensor) -> list[str]:
    """The topics (ACL patterns) of ``mapping`` that ``sensor`` may publish to: none for another kind.

    The level the mapping reads the sensor id from becomes the sensor's id (or each vendor id the
    mapping maps to it), ``{district}`` its district, any other level ``+``.
    """
    decl = mapping.decl
    if mapping.kind != sensor.kind:
        return []
    own = [v for v, s in (decl.sensor_id.ids or {}).items() if s == sensor.id] or [sensor.id]
    topics = []
    for device_id in own if decl.sensor_id.topic else [None]:
        levels = []
        for level in decl.topic.split("/"):
            name = level[1:-1] if level.startswith("{") and level.endswith("}") else None
            if name is None:
                levels.append(level)
            elif name == decl.sensor_id.topic:
                levels.append(device_id)
            else:
                levels.append(sensor.district if name == "district" else "+")
        topics.append("/".join(levels))
    return topics


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``, Mosquitto 2's password hash."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_file(creds: MqttCredentials, usernames: Iterable[str]) -> str:
    """Mosquitto's password file for ``usernames`` (each must have a password in ``creds``)."""
    lines = []
    for name in usernames:
        password = creds.password(name)
        if password is None:
            raise ConfigError(f"no MQTT password for account {name!r}")
        lines.append(f"{name}:{mosquitto_hash(password.get_secret_value())}")
    return "\n".join(lines) + "\n"


def _block(username: str, read: Iterable[str], write: Iterable[str]) -> list[str]:
    return [f"user {username}", *(f"topic read {t}" for t in read), *(f"topic write {t}" for t in write), ""]


def acl_file(registry: SensorRegistry, templates: Iterable[str] = (DEFAULT_TOPIC_TEMPLATE,),
             services: Iterable[ServiceAccount] = SERVICE_ACLS, mappings: Iterable[Mapping] = ()) -> str:
    """Mosquitto's ACL file: the services' blocks, then one block per device of ``registry``."""
    templates, mappings = tuple(templates), tuple(mappings)
    lines = [f"# generated by `cityeye devices export-acl` from {registry.source}: do not edit", ""]
    for account in services:
        # the gateway also subscribes to the mappings' topics
        extra = [m.mqtt_filter for m in mappings] if account.username == GATEWAY_ACCOUNT else []
        lines += _block(account.username, (*account.read, *(f for f in extra if f not in account.read)), account.write)
    for sensor in registry:
        topics = device_topics(sensor, templates)
        topics += [t for m in mappings for t in mapping_topics(m, sensor) if t not in topics]
        lines += _block(sensor.id, (), topics)
    return "\n".join(lines)


def broker_auth_conf(password_path: str | os.PathLike, acl_path: str | os.PathLike) -> str:
    """The ``mosquitto.conf`` lines that turn on the accounts and the ACL for every listener."""
    return (
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"password_file {password_path}\n"
        f"acl_file {acl_path}\n"
        # a client's id is its username: the gateway's session is bound to the gateway's account
        "use_username_as_clientid true\n"
    )


@dataclass(frozen=True)
class BrokerFiles:
    """Where :func:`export_broker_files` wrote the broker's files, and what it counted."""

    password_path: Path
    acl_path: Path
    devices: int
    services: int


def export_broker_files(registry: SensorRegistry, creds: MqttCredentials, out_dir: str | os.PathLike,
                        templates: Iterable[str] = (DEFAULT_TOPIC_TEMPLATE,),
                        mappings: Iterable[Mapping] = ()) -> BrokerFiles:
    """Write ``mosquitto.passwd`` (0600) and ``mosquitto.acl`` into ``out_dir`` for ``registry``'s devices."""
    out = Path(out_dir)
    services = [a.username for a in SERVICE_ACLS]
    usernames = [*services, *(s.id for s in registry)]
    taken = set(services) & {s.id for s in registry}
    if taken:
        raise ConfigError(f"sensor id(s) {', '.join(sorted(taken))} clash with CityEye's service accounts")
    acl = acl_file(registry, templates, mappings=mappings)
    passwd = password_file(creds, usernames)
    write_private(out / "mosquitto.passwd", passwd)
    write_private(out / "mosquitto.acl", acl)
    return BrokerFiles(out / "mosquitto.passwd", out / "mosquitto.acl", len(registry), len(services))

