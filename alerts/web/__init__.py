"""The HTTP surface: JSON API, OpenAPI document, duty officers' console."""
