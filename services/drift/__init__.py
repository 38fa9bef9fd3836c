"""Drift: whether production data still looks like the data a version was trained on.

- :mod:`services.drift.bins`: each version's reference profile — fixed bins derived once from its training
  data (quantile edges for numeric features, categories for categorical ones) and stored, so that the
  histograms kept at ingest and PSI/JS values compare window to window.
- :mod:`services.drift.stats`: the per-feature statistics (pure functions).
- :mod:`services.drift.sequential`: sequential alarms over time (Page–Hinkley, CUSUM).
"""
