"""Current bin counts and the frozen profile in; the drift report, its text table and its
per-bin chart rows out.

The counts come from a `Tally` (the drift stage and CLI, batch by batch) or from the server's live
window; both bin with `modelops.drift.bins`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np

from modelops.drift.bins import category_counts, numeric_counts
from modelops.drift.profile import CategoricalProfile, FeatureProfile, NumericProfile, Profile
from modelops.drift.psi import classify, degrees_of_freedom, p_value, psi
from modelops.drift.status import SEVERITY, Status, Thresholds, worst
from modelops.types import FloatArray, IntArray

Kind = Literal["numeric", "categorical", "prediction"]


class FeatureDrift(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One feature (or scored class) of a drift check. Rates are shares of all rows checked."""

    kind: Kind
    status: Status
    rows: int
    psi: float | None
    p_value: float | None
    dof: int
    missing_rate_reference: float
    missing_rate_current: float | None
    missing_rate_change: float | None
    unseen_share: float | None = (
        None  # categorical only: current rows with a category new to training
    )


class ProfiledModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The model whose profile the rows were judged against."""

    name: str
    sha256: str | None


class Source(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the checked rows came from; filled by whoever read them."""

    path: str
    files: int
    served_versions: dict[str, int] = msgspec.field(default_factory=dict)  # prediction log only
    first_timestamp: str | None = None
    last_timestamp: str | None = None


class DriftReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A drift check of `rows` current rows against the frozen profile of `model`."""

    status: Status
    rows: int
    reference_rows: int
    model: ProfiledModel
    thresholds: Thresholds
    features: dict[str, FeatureDrift]
    predictions: dict[str, FeatureDrift]
    source: Source | None = None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    def flagged(self, at_least: Status = "moderate") -> list[str]:
        """Names of the features at or above `at_least` (predictions as 'prediction <class>')."""
        rank = SEVERITY[at_least]
        return [name for name, d in self.parts() if SEVERITY[d.status] >= rank]

    def with_source(self, source: Source) -> DriftReport:
        return msgspec.structs.replace(self, source=source)

    def parts(self) -> list[tuple[str, FeatureDrift]]:
        """Features, then scored classes as 'prediction <class>': every distribution judged."""
        return [
            *self.features.items(),
            *((f"prediction {cls}", d) for cls, d in self.predictions.items()),
        ]

    def summary(self) -> DriftSummary:
        judged = [(name, d) for name, d in self.parts() if d.psi is not None]
        worst = max(judged, key=lambda part: part[1].psi or 0.0, default=None)
        return DriftSummary(
            status=self.status,
            severity=SEVERITY[self.status],
            rows=self.rows,
            flagged=len(self.flagged()),
            worst_psi=None if worst is None else worst[1].psi,
            worst=None if worst is None else worst[0],
        )


class DriftSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A drift check in a few numbers: DVC's drift metric (metrics/drift_summary.json) and the
    one-line verdict. The per-feature detail stays in the report, which DVC treats as data."""

    status: Status
    severity: int  # the status's position in STATUSES: a number `dvc metrics diff` can compare
    rows: int
    flagged: int  # features and scored classes at moderate or significant
    worst_psi: float | None  # the largest PSI judged, and whose it is
    worst: str | None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    def verdict(self) -> str:
        """One line for a terminal: the status, parts flagged, the largest PSI, rows checked."""
        worst = (
            "" if self.worst_psi is None else f", largest PSI {self.worst_psi:.3f} ({self.worst})"
        )
        return f"drift: {self.status}, {self.flagged} flagged{worst}, {self.rows} rows"


def prediction_part(cls: str) -> str:
    """The distribution name (and plot file stem) of a scored class's predicted probability."""
    return f"prediction_{cls}"


def feature_drift(
    kind: Kind, reference: IntArray, current: IntArray, thresholds: Thresholds, tests: int = 1
) -> FeatureDrift:
    """Compare two count vectors in bin order (…, [unseen,] missing); `tests` is k (see psi.py)."""
    n, m = int(reference.sum()), int(current.sum())
    miss_ref = reference[-1] / n if n else 0.0
    miss_cur = current[-1] / m if m else None
    unseen = (current[-2] / m if m else None) if kind == "categorical" else None
    dof = degrees_of_freedom(reference)
    value: float | None = None
    p: float | None = None
    status: Status = "insufficient_data"
    if m >= thresholds.min_rows and n > 0:
        value = psi(reference, current)
        p = p_value(value, n, m, dof)
        status = classify(value, p, thresholds, tests)
    return FeatureDrift(
        kind=kind,
        status=status,
        rows=m,
        psi=value,
        p_value=p,
        dof=dof,
        missing_rate_reference=float(miss_ref),
        missing_rate_current=None if miss_cur is None else float(miss_cur),
        missing_rate_change=None if miss_cur is None else float(miss_cur - miss_ref),
        unseen_share=None if unseen is None else float(unseen),
    )


def compare(
    profile: Profile,
    features: Mapping[str, IntArray],
    predictions: Mapping[str, IntArray],
    thresholds: Thresholds,
    rows: int,
) -> DriftReport:
    """The drift report of current bin counts (per feature, per scored class) against the profile.

    A scored class with no current rows is left out: the rows carried no probabilities."""
    scored = [cls for cls in profile.predictions if cls in predictions and predictions[cls].sum()]
    tests = len(profile.features) + len(scored)
    feats = {
        name: feature_drift(
            "numeric" if isinstance(p, NumericProfile) else "categorical",
            p.bin_counts(),
            features[name],
            thresholds,
            tests,
        )
        for name, p in profile.features.items()
    }
    preds = {
        cls: feature_drift(
            "prediction", profile.predictions[cls].bin_counts(), predictions[cls], thresholds, tests
        )
        for cls in scored
    }
    statuses = [d.status for d in (*feats.values(), *preds.values())]
    return DriftReport(
        status=worst(statuses) if rows >= thresholds.min_rows else "insufficient_data",
        rows=rows,
        reference_rows=profile.rows,
        model=ProfiledModel(profile.model_name, profile.model_sha256),
        thresholds=thresholds,
        features=feats,
        predictions=preds,
    )


class Tally:
    """Bin counts of current rows, accumulated batch by batch against a frozen profile.

    A reader feeds every feature of each batch (`add_numeric` or `add_codes`), the batch's row
    count (`add_rows`) and, for rows that carry them, predicted probabilities (`add_scores`);
    `report()` then compares everything to the profile. Prediction drift is judged over the rows
    that had probabilities only, and left out of the report when none had.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.rows = 0
        self._edges = {
            name: np.asarray(p.edges, dtype=np.float64)
            for name, p in (*profile.features.items(), *profile.predictions.items())
            if isinstance(p, NumericProfile)
        }
        self.features = {
            n: np.zeros(len(p.labels()), np.int64) for n, p in profile.features.items()
        }
        self.predictions = {
            n: np.zeros(len(p.labels()), np.int64) for n, p in profile.predictions.items()
        }

    def add_rows(self, n: int) -> None:
        self.rows += n

    def add_numeric(self, name: str, values: FloatArray) -> None:
        self.features[name] += numeric_counts(values, self._edges[name])

    def add_codes(self, name: str, codes: IntArray, dictionary: Sequence[Any]) -> None:
        p = self.profile.features[name]
        assert isinstance(p, CategoricalProfile)
        self.features[name] += category_counts(codes, dictionary, p.categories)

    def add_scores(self, cls: str, values: FloatArray) -> None:
        self.predictions[cls] += numeric_counts(values, self._edges[cls])

    def report(self, thresholds: Thresholds) -> DriftReport:
        return compare(self.profile, self.features, self.predictions, thresholds, self.rows)

    def distributions(self) -> dict[str, list[dict[str, Any]]]:
        """Per feature (and 'prediction_<class>'), rows of reference vs current share per bin."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, counts in self.features.items():
            out[name] = distribution_rows(self.profile.features[name], counts)
        for cls, counts in self.predictions.items():
            if counts.sum():
                out[prediction_part(cls)] = distribution_rows(self.profile.predictions[cls], counts)
        return out


def distribution_rows(profile: FeatureProfile, current: IntArray) -> list[dict[str, Any]]:
    """Long-form rows {bin, sample, share} for a grouped bar chart; bins empty on both sides and
    the unseen/missing bins are left out when neither sample has any."""
    reference = profile.bin_counts()
    n, m = max(int(reference.sum()), 1), max(int(current.sum()), 1)
    rows: list[dict[str, Any]] = []
    for label, r, c in zip(profile.labels(), reference.tolist(), current.tolist(), strict=True):
        if r == 0 and c == 0:
            continue
        rows.append({"bin": label, "sample": "reference", "share": r / n})
        rows.append({"bin": label, "sample": "current", "share": c / m})
    return rows


def format_report(report: DriftReport) -> str:
    """The report as a fixed-width table a person reads in a terminal or a cron mail."""
    t = report.thresholds
    sha = (report.model.sha256 or "unknown")[:12]
    where = f" of {report.source.path}" if report.source else ""
    lines = [  # within 100 columns, for a terminal
        f"drift check: {report.rows} rows{where} against {report.model.name}",
        f"  (model sha256 {sha}, {report.reference_rows} reference rows)",
        f"moderate: PSI >= {t.moderate:g}, significant: PSI >= {t.significant:g}, either only if "
        f"unlikely by chance",
        f"  (false-alarm rate {t.alpha:g} per check); under {t.min_rows} rows: not judged",
        "",
        f"{'feature':<22} {'kind':<11} {'rows':>7} {'psi':>8} {'p-value':>9} "
        f"{'missing':>9} {'unseen':>7}  status",
    ]
    for name, d in report.parts():
        value = "-" if d.psi is None else f"{d.psi:.4f}"
        p = "-" if d.p_value is None else f"{d.p_value:.1e}"
        missing = "-" if d.missing_rate_change is None else f"{d.missing_rate_change:+.1%}"
        unseen = "" if d.unseen_share is None else f"{d.unseen_share:.1%}"
        lines.append(
            f"{name:<22} {d.kind:<11} {d.rows:>7} {value:>8} {p:>9} {missing:>9} "
            f"{unseen:>7}  {d.status}"
        )
    flagged = report.flagged()
    summary = f" ({', '.join(flagged)})" if flagged else ""
    lines += ["", f"overall: {report.status}{summary}"]
    if report.source and len(report.source.served_versions) > 1:
        versions = ", ".join(f"{v}: {n}" for v, n in report.source.served_versions.items())
        lines.append(f"note: the log mixes model versions ({versions})")
    return "\n".join(lines)
