"""CityEye alerts."""
