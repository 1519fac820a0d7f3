"""The lifelong wing: logs ingested one day at a time, and models evaluated (walk-forward, test then train)
as the log grows and drifts. Its own code location, built by ``definitions.build_definitions(settings)``.

- ``settings.py``: what the location is built from (``configs/lifelong.yaml``): first day, window, run config
- ``partitions.py``: the days and the walk-forward windows over them; which landed file holds which day
- ``daily_ingest.py``, ``daily_events.py``: landed files of some days -> the ``daily_*`` tables, as an asset
- ``walk_forward.py``: the window-partitioned ``walk_forward`` asset and its leakage check, over
  ``histories.py`` (the log as arrays), ``strategies.py`` (frozen, fine_tune, retrain), ``checkpoints.py``
  (each model and strategy's weights between windows), ``champion.py`` and ``tracking.py`` (MLflow)
- ``jobs.py``, ``sensors.py``, ``schedules.py``: the incremental refresh
- ``__main__.py``: a walk-forward from the command line (``python -m pipelines.lifelong``)
"""
