"""The cases schema revisions."""
