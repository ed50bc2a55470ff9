"""The Streamlit dashboard. Each page reads one source and shapes what it reads with pure, unit-tested functions:

- sources: :mod:`.live_metrics` (Redis ``metrics:*``), :mod:`.kafka_admin` (Kafka's admin API),
  :mod:`.api_client` (the platform API); they raise :mod:`.errors` a page shows as a message;
- frames, one module per page: :mod:`.frames_live`, :mod:`.frames_drift`, :mod:`.frames_models`,
  :mod:`.frames_pipelines`, :mod:`.frames_predict` (with :mod:`.values`, lenient readers of API values);
- :mod:`.labels` (units, windows, class names), :mod:`.charts` (Altair), :mod:`.pages` (Streamlit, one module a
  page), :mod:`.server` (the Streamlit command line).

``services/dashboard/app.py`` is the thin Streamlit entry.
"""
