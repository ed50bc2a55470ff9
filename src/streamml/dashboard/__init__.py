"""The Streamlit dashboard: data access and shaping in :mod:`~streamml.dashboard.queries` (unit-tested), charts in
:mod:`~streamml.dashboard.charts`, one rendering module per page in :mod:`~streamml.dashboard.pages`.
``services/dashboard/app.py`` is the thin Streamlit entry."""
