"""YAML configuration files whose errors name the file, the line and the field.

Every configuration file of the project (registry, rules, rule tests) is
parsed twice from the same text: once into plain data to validate, once
into a node tree (:func:`yaml.compose`) to find the line of a field when
the data is refused::

    data, root = load_yaml(text, "rules.yaml", RulesError)
    ...
    raise RulesError(f"rules.yaml:{line_of(root, ('kinds', 'sewer'))}: kinds.sewer: unknown kind")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["first_problem", "line_of", "load_yaml", "read_config_text"]


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the node at ``path`` (mapping keys and sequence indexes), best effort.

    >>> root = yaml.compose("a:\\n  b: 1\\n  c: [x, y]\\n")
    >>> line_of(root, ("a", "c")), line_of(root, ("a", "missing")), line_of(root, ())
    (3, 1, 1)
    """
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(step):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def load_yaml(text: str, source: str, error: type[Exception]) -> tuple[Any, yaml.Node | None]:
    """``(data, node tree)`` of ``text``; a YAML syntax error raises ``error`` naming ``source`` and the line."""
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise error(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def read_config_text(path: str | Path, error: type[Exception], what: str) -> str:
    """The UTF-8 text of a configuration file; ``error`` names the file and what it is when it cannot be read."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{p}: {what} is not UTF-8 text") from None


def first_problem(exc: Any) -> tuple[tuple[Any, ...], str]:
    """``(location, message)`` of a :class:`pydantic.ValidationError`'s first error, ready for a file:line message.

    The location is the field path (for :func:`line_of`); the message drops
    pydantic's ``"Value error, "`` prefix of a validator's own words.
    """
    err = exc.errors()[0]
    return tuple(err["loc"]), err["msg"].removeprefix("Value error, ")
