"""The prediction log (params performance.predictions) + outcomes (performance.outcomes) + the test
metrics of each served version in; metrics/performance.json (per version and time window: metrics,
label coverage, change against test, status), its summary (the DVC metric) and
metrics/performance_plots/ out."""

from __future__ import annotations

import msgspec

from modelops import files, paths
from modelops.card import load_card
from modelops.params import load
from modelops.performance import baseline, join, log, outcomes, report
from modelops.performance.judge import Model, Rule
from modelops.stages import run


def main() -> None:
    params = load()
    p = params.performance
    card = load_card(paths.CARD)
    target = card.feature_schema.target
    predictions = log.read(p.predictions, params.base.model_name, [str(c) for c in card.classes])
    known = outcomes.read([p.outcomes])
    width = join.window_ns(p.window)
    joined = join.join(predictions, known, [str(c) for c in card.classes], width)
    tests = baseline.baselines(
        predictions.versions,
        params.base.model_name,
        files.read_json(paths.METRICS),
        f"workspace {paths.METRICS}",
    )
    models = {v: Model.of(target, b.metrics) for v, b in tests.items()}
    result = report.build(
        params.base.model_name,
        predictions,
        known,
        joined,
        models,
        tests,
        Rule.from_params(p),
        p.window,
        width,
        params.base.seed,
    )
    with files.outputs(
        paths.PERFORMANCE, paths.PERFORMANCE_SUMMARY, paths.PERFORMANCE_PLOTS
    ) as out:
        files.write_json(out.path(paths.PERFORMANCE), result.to_dict())
        files.write_json(out.path(paths.PERFORMANCE_SUMMARY), msgspec.to_builtins(result.summary()))
        plots = out.dir(paths.PERFORMANCE_PLOTS)
        for version in result.versions:
            rows = report.plot_rows(result, version)
            files.write_json(plots / f"{files.safe_name(version)}.json", rows)
    print(report.format_report(result))


if __name__ == "__main__":
    run(main)
