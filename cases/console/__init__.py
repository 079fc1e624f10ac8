"""The cases console: static files served by cases/web.py at /cases/ (plain JS, no build step)."""
