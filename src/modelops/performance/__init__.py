"""Production performance: logged predictions joined to the outcomes that arrive later.

    outcomes.py   outcome files (CSV/parquet: id, label, observed_at) and feedback segments, read
    log.py        the prediction log read for judging: version, id, time, probabilities
    join.py       outcomes joined to predictions by id; time windows; what could not be joined
    judge.py      metrics per version and window, the bootstrap, THE status rule
    status.py     the statuses in order of severity
    baseline.py   a version's own test metrics: the registry's tagged commit, or the workspace
    report.py     the report, its text table and its chart rows
    demo.py       a demo prediction log and its delayed outcomes, with a concept change

The metrics are `modelops.evaluation`'s; the log formats are `modelops.logline`'s.
"""
