"""Offline evaluation of CityEye detectors (NAB scorer and runner)."""
