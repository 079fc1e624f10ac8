"""CityEye simulators."""
