"""pytest collects the doctests of cases/; the Alembic scripts run only under Alembic."""

collect_ignore = ["migrations"]
