"""The dispatch pipeline: pure stages, explicit ``now``."""
