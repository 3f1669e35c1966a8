"""Retraining: training runs on a curated dataset version (queue, run on the ``gpu`` worker, cancel, progress) and
batch re-analysis with the active model.

Split from ``webapp.registry``, which keeps the model versions: the analysis app needs the registry (which model to
run), and retraining needs curation (the dataset) and analysis (re-analysis), so the two halves sit on either side.
"""
