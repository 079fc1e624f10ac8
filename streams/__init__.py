"""CityEye streams."""
