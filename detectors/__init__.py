"""CityEye detectors."""
