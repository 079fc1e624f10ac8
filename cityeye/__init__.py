"""CityEye: streaming IoT sensing and early warning for a city operations centre."""

__version__ = "0.1.0"
