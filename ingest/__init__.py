"""CityEye ingest."""
