"""CityEye simulators: a demo city's sensors and the readings they publish.

:data:`DEMO_REGISTRY` is the demo city's sensor registry; the ``cityeye``
command line declares it as the default registry (used when
``settings.registry`` is empty, see ``launch/cli.py``).
"""

from pathlib import Path

__all__ = ["DEMO_REGISTRY"]

#: the demo city's sensors (the default registry of the ``cityeye`` commands)
DEMO_REGISTRY = Path(__file__).resolve().parent / "demo_registry.yaml"
