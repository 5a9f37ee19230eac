"""`modelops use-data` and `modelops summary`: a user's table in, the repository switched to it;
the workspace's card, metrics and drift summary in, the first screen a person reads out.

The library (pandas, DVC calls) is imported when a command runs, so other commands start fast.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from modelops import paths

if TYPE_CHECKING:
    from modelops.usedata import Switched


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    use = commands.add_parser(
        "use-data",
        help="switch the repository to your own table",
        description=(
            "Train on your own CSV or parquet file: track it with DVC (`dvc add`, unless a .dvc "
            "file from `dvc add` or `dvc import-url` already does), point params.yaml at it "
            "(data.path, data.target, data.positive_class, data.drop with identifier-like "
            f"columns, no feature declarations, base.model_name, drift.incoming: {paths.TEST}), "
            "name dvc.yaml's artifact, take the bundled data's `generate` stage out of the "
            "pipeline and remove what it wrote. Nothing changes unless the table validates. "
            "Then: dvc repro, git add -A && git commit, modelops registry register."
        ),
    )
    use.add_argument("path", metavar="PATH", help="the table, inside the repository")
    use.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    use.add_argument(
        "--name", required=True, help="the model's name in the registry (its git tags)"
    )
    use.add_argument(
        "--positive",
        metavar="LABEL",
        help="binary targets: the class whose probability is scored (required for text labels)",
    )
    use.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="COL",
        help="a column that is no feature (repeatable); identifier-like columns are found anyway",
    )
    use.add_argument(
        "--na-value",
        action="append",
        default=[],
        metavar="TEXT",
        help="a CSV field text that means missing, e.g. NA (repeatable; the empty field always does)",
    )
    use.set_defaults(handler=_use_data)
    summary = commands.add_parser(
        "summary",
        help="the model, its metrics and the drift verdict in a few lines",
        description=(
            f"Print what `dvc repro` produced, within 100 columns: the model ({paths.CARD}), "
            f"its test metrics ({paths.METRICS}) and the drift verdict ({paths.DRIFT_SUMMARY})."
        ),
    )
    summary.set_defaults(handler=_summary)


def _use_data(args: argparse.Namespace) -> int:
    from modelops.errors import DataValidationError, ModelopsError
    from modelops.usedata import use_data

    try:
        switched = use_data(
            args.path, args.target, args.name, args.positive, args.drop, args.na_value
        )
    except DataValidationError as exc:
        raise ModelopsError(
            f"{exc}\nnothing was changed; --drop COL leaves out a column that is no feature, "
            "--na-value TEXT names a CSV field text that means missing"
        ) from None
    print(describe(switched))
    return 0


def describe(s: Switched) -> str:
    """What use-data inferred and changed, and what to do next."""
    from modelops.schema import NumericFeature

    target = s.schema.target
    scored = f"scores {target.positive!r}" if target.is_binary else "each class scored one-vs-rest"
    how = "dvc add" if s.added else "already tracked"
    lines = [
        f"{s.path}: {s.rows} rows, {len(s.columns)} columns; DVC tracks it ({how}: {s.tracked_by})",
        f"target {target.name!r}: {len(target.classes)} classes "
        f"({', '.join(map(str, target.classes[:8]))}); {scored}",
        f"features, inferred ({len(s.schema.features)}; pin them in params.yaml data.features):",
    ]
    for f in s.schema.features:
        if isinstance(f, NumericFeature):
            kind = f"numeric, {f.dtype}"
        else:
            kind = f"categorical, {len(f.categories)} categories"
        lines.append(f"  {f.name:<24} {kind}{', has gaps' if f.nullable else ''}")
    for column, reason in s.drops.items():
        lines.append(f"dropped {column!r}: {reason}")
    lines.append(f"model name {s.name!r}: params base.model_name and dvc.yaml's artifact")
    lines.append(f"drift judges {paths.TEST} (the held-out split) until drift.incoming changes")
    lines.append(
        "demo stages generate and simulate removed from dvc.yaml; performance commented out there "
        "until your own predictions and outcomes exist"
    )
    if s.removed:
        lines.append(f"removed what the demo stages wrote: {', '.join(s.removed)}")
    if s.kept:
        lines.append(
            f"left in place (changed since the demo stages wrote them): {', '.join(s.kept)}"
        )
    lines += [
        "",
        "next:",
        "  dvc repro",
        f'  git add -A && git commit -m "Train {s.name} on {s.path}"',
        "  modelops registry register",
    ]
    return "\n".join(lines)


def _summary(args: argparse.Namespace) -> int:
    from modelops.summary import summary

    print(summary())
    return 0
