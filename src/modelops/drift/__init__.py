"""Drift of current rows against the frozen reference profile of a trained model.

    status.py    the statuses in order of severity, thresholds, the live window's settings
    profile.py   the reference profile (models/profile.json) and how it is built
    bins.py      THE binning kernel: which bin of a profile each value falls in
    psi.py       PSI of two count vectors, its p-value, the status of one distribution
    report.py    a drift report from current counts, and its text and chart forms
    incoming.py  files of incoming rows (batches, prediction logs) read into bin counts

Nothing is imported here, so `modelops.drift.status` stays free of numpy for the command line,
which needs only the status names.
"""
