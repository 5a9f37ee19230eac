"""Training data and bin counts in; the frozen reference profile, PSI, p-values and drift status out.

Pure numpy (and scipy's chi-square tail): no I/O. The streaming file reader is `modelops.incoming`;
the stage, the CLI and the server only move bytes in and out of what is defined here.

**Bins.** A numeric feature keeps the interior quantile cut points of its training values
(`edges`); its bins are right-closed and the outer ones open: (-inf, e0], (e0, e1], …,
(e_last, +inf), then one bin for missing values. Cut points are observed values (quantile method
"lower"), deduplicated, and never the maximum, so every reference value bin holds at least one row
even for discrete features. A categorical feature has one bin per training category, one for
values unseen in training, and one for missing values. The predicted probability of each scored
class is binned like a numeric feature. The edges are frozen in the profile at training time;
checking a batch never re-derives them from the batch.

**PSI.** Over the bins of two samples, PSI = Σ (a_i − e_i)·ln(a_i / e_i), with e the reference and
a the current proportions. A bin empty on both sides contributes nothing and is dropped. A bin empty
on one side only would make the sum infinite, so its proportion is smoothed to epsilon: for
counts, half a row of that sample (epsilon = 0.5 / n); for bare proportions, `EPSILON` = 1e-4
unless the caller passes another. Smoothed proportions are not renormalised.

**Significance.** Under no drift, PSI / (1/N + 1/M) is approximately chi-square with (B − 1)
degrees of freedom (Yurdakul 2018), N and M the reference and current row counts and B the number
of bins the reference populates (at least 2, so the degrees of freedom are at least 1). Small
samples have large PSI by chance alone: 10 equal bins, N = 10 000, M = 100 give PSI > 0.1 about a
third of the time. The approximation runs hot in the far tail for small M (simulated with 10 equal
bins and N = 24 000: at M = 200, p < 0.001 happens twice as often as it should; at M = 1 000, 1.1
times), which is why nothing is judged below `min_rows` = 300 rows by default: from there on, a
check of an unchanged population raises an alarm less often than `alpha`.

**Status.** Per feature, with thresholds `moderate` < `significant` and false-alarm rate `alpha`:

    fewer than min_rows current rows          -> insufficient_data (no PSI, no p-value)
    PSI >= moderate but p >= alpha / k        -> insufficient_data (large, but could be chance)
    PSI >= significant and p < alpha / k      -> significant
    PSI >= moderate    and p < alpha / k      -> moderate
    otherwise                                 -> stable

where k is the number of distributions checked together (features plus scored classes): the
Bonferroni split makes `alpha` the chance that a check of an unchanged population flags anything
at all, not the chance per feature. The reported `p_value` is the raw, per-feature one. The report's
status is the worst of its parts (stable < insufficient_data < moderate < significant).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import chdtrc

from modelops.errors import SchemaError
from modelops.params import DriftParams
from modelops.schema import FeatureSchema, NumericFeature, category_name

PROFILE_SCHEMA_VERSION = 1
EPSILON = 1e-4

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Status = Literal["stable", "insufficient_data", "moderate", "significant"]
STATUSES: tuple[Status, ...] = ("stable", "insufficient_data", "moderate", "significant")
SEVERITY: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}
MISSING_LABEL = "(missing)"
UNSEEN_LABEL = "(unseen)"


# --------------------------------------------------------------------------- reference profile


class NumericProfile(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="numeric", tag_field="kind"
):
    rows: int
    edges: list[float]
    counts: list[int]
    missing: int
    summary: dict[str, float] = msgspec.field(default_factory=dict)

    def bin_counts(self) -> IntArray:
        """Counts in bin order: the value bins, then missing."""
        return np.array([*self.counts, self.missing], dtype=np.int64)

    def labels(self) -> list[str]:
        bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
        values = [
            f"({lo}, {hi}{')' if hi == 'inf' else ']'}" for lo, hi in itertools.pairwise(bounds)
        ]
        return [*values, MISSING_LABEL]


class CategoricalProfile(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="categorical", tag_field="kind"
):
    rows: int
    categories: list[str]
    counts: list[int]
    unseen: int
    missing: int

    def bin_counts(self) -> IntArray:
        """Counts in bin order: one per category, then unseen, then missing."""
        return np.array([*self.counts, self.unseen, self.missing], dtype=np.int64)

    def labels(self) -> list[str]:
        return [*self.categories, UNSEEN_LABEL, MISSING_LABEL]


FeatureProfile = NumericProfile | CategoricalProfile


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The reference profile of one trained model (models/profile.json), frozen at training time."""

    schema_version: int
    model_name: str
    n_bins: int
    rows: int
    features: dict[str, FeatureProfile]
    predictions: dict[str, NumericProfile] = msgspec.field(default_factory=dict)
    model_sha256: str | None = None  # the model artifact this profile was computed with
    live: LiveSettings | None = None  # params.yaml's drift rule and window, for the server

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], source: str = "profile") -> Profile:
        try:
            profile = msgspec.convert(obj, type=cls)
        except msgspec.ValidationError as exc:
            raise SchemaError(f"{source}: not a valid reference profile: {exc}") from None
        profile._check(source)
        return profile

    @classmethod
    def decode(cls, data: bytes, source: str = "profile") -> Profile:
        try:
            profile = msgspec.json.decode(data, type=cls)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SchemaError(f"{source}: not a valid reference profile: {exc}") from None
        profile._check(source)
        return profile

    def _check(self, source: str) -> None:
        if self.schema_version != PROFILE_SCHEMA_VERSION:
            raise SchemaError(
                f"{source}: profile schema_version {self.schema_version} is not supported "
                f"(this modelops reads {PROFILE_SCHEMA_VERSION}); re-run the profile stage"
            )
        parts: dict[str, FeatureProfile] = {**self.features}
        parts.update({f"prediction {k}": v for k, v in self.predictions.items()})
        for name, p in parts.items():
            where = f"{source}: {name!r}"
            if isinstance(p, NumericProfile):
                if len(p.counts) != len(p.edges) + 1:
                    raise SchemaError(
                        f"{where}: {len(p.edges)} edges need {len(p.edges) + 1} counts"
                    )
                if any(not math.isfinite(e) for e in p.edges) or any(
                    b <= a for a, b in itertools.pairwise(p.edges)
                ):
                    raise SchemaError(f"{where}: edges must be finite and strictly increasing")
            elif len(p.counts) != len(p.categories):
                raise SchemaError(
                    f"{where}: {len(p.categories)} categories but {len(p.counts)} counts"
                )
            if int(p.bin_counts().min()) < 0 or int(p.bin_counts().sum()) != p.rows:
                raise SchemaError(f"{where}: counts must be non-negative and sum to rows={p.rows}")


def quantile_edges(values: FloatArray, n_bins: int) -> FloatArray:
    """Interior cut points splitting the non-missing `values` into at most `n_bins` quantile bins."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, qs, method="lower"))
    return edges[edges < finite.max()].astype(np.float64)


def count_numeric(values: FloatArray, edges: FloatArray) -> tuple[IntArray, int]:
    """Counts per value bin (len(edges) + 1 bins) and the number of missing (NaN) values."""
    counts = bin_numeric(values, edges)
    return counts[:-1], int(counts[-1])


def count_categorical(
    values: npt.NDArray[Any], categories: Sequence[str]
) -> tuple[IntArray, int, int]:
    """Counts per known category, then the unseen and missing counts. Missing is None or NaN."""
    codes, dictionary = encode_values(values)
    counts = bin_codes(codes, dictionary, categories)
    return counts[:-2], int(counts[-2]), int(counts[-1])


def numeric_profile(values: FloatArray, n_bins: int) -> NumericProfile:
    edges = quantile_edges(values, n_bins)
    counts, missing = count_numeric(values, edges)
    finite = values[~np.isnan(values)]
    summary = (
        {
            "min": float(finite.min()),
            "max": float(finite.max()),
            "mean": float(finite.mean()),
            "std": float(finite.std()),
        }
        if finite.size
        else {}
    )
    return NumericProfile(int(values.size), edges.tolist(), counts.tolist(), missing, summary)


def categorical_profile(values: npt.NDArray[Any], categories: Sequence[str]) -> CategoricalProfile:
    counts, unseen, missing = count_categorical(values, categories)
    return CategoricalProfile(len(values), list(categories), counts.tolist(), unseen, missing)


def build_profile(
    schema: FeatureSchema,
    frame: pd.DataFrame,
    n_bins: int,
    model_name: str,
    prediction_proba: npt.NDArray[np.float64] | None = None,
    model_sha256: str | None = None,
) -> Profile:
    """The reference profile of a model: every schema feature over the training `frame` and,
    when given, the predicted probability of each scored class (the positive class for binary)."""
    model_frame = schema.to_model_frame(frame)
    features: dict[str, FeatureProfile] = {}
    for f in schema.features:
        col = model_frame[f.name].to_numpy()
        if isinstance(f, NumericFeature):
            features[f.name] = numeric_profile(col.astype(np.float64), n_bins)
        else:
            features[f.name] = categorical_profile(col, f.categories)
    predictions: dict[str, NumericProfile] = {}
    if prediction_proba is not None:
        classes = schema.target.classes
        for cls in schema.target.scored:
            column = prediction_proba[:, classes.index(cls)]
            predictions[str(cls)] = numeric_profile(column.astype(np.float64), n_bins)
    return Profile(
        schema_version=PROFILE_SCHEMA_VERSION,
        model_name=model_name,
        n_bins=n_bins,
        rows=len(frame),
        features=features,
        predictions=predictions,
        model_sha256=model_sha256,
    )


# --------------------------------------------------------------------------- binning


def bin_numeric(values: FloatArray, edges: FloatArray) -> IntArray:
    """Counts per bin of float `values` against right-closed `edges`: value bins, then missing."""
    # Only counts are needed, never each row's bin: count(values <= e) per edge and take the
    # differences. NaN compares false, so it falls out of every count and lands in missing.
    # One vectorised comparison per edge is ~10x faster than a binary search per value at
    # 10 bins, and no slower at the 100-bin limit.
    n_missing = int(np.count_nonzero(np.isnan(values)))
    at_or_below = [int(np.count_nonzero(values <= e)) for e in edges.tolist()]
    value_bins = np.diff(np.array([0, *at_or_below, values.size - n_missing], dtype=np.int64))
    return np.append(value_bins, n_missing)


def encode_values(values: npt.NDArray[Any]) -> tuple[IntArray, list[str]]:
    """Object values to (codes, dictionary): codes index the dictionary, -1 marks missing."""
    missing = pd.isna(values)
    present = np.array([category_name(v) for v in values[~missing]], dtype=str)
    dictionary, inverse = np.unique(present, return_inverse=True)
    codes = np.full(values.size, -1, dtype=np.int64)
    codes[~missing] = inverse
    return codes, dictionary.tolist()


def bin_codes(codes: IntArray, dictionary: Sequence[str], categories: Sequence[str]) -> IntArray:
    """Counts per bin of dictionary-encoded values: one per category, then unseen, then missing.

    `codes` index `dictionary`; -1 marks a missing value. Only the (small) dictionary is matched
    against the categories, so the work per row is one table lookup.
    """
    position = {c: i for i, c in enumerate(categories)}
    unseen, missing = len(categories), len(categories) + 1
    # The extra last entry is what code -1 (missing) picks with numpy's negative indexing.
    lookup = np.array([*(position.get(str(v), unseen) for v in dictionary), missing], np.int64)
    return np.bincount(lookup[codes], minlength=missing + 1).astype(np.int64)


# --------------------------------------------------------------------------- PSI and significance


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI between two vectors of bin proportions; a proportion of zero becomes `epsilon`.

    >>> round(psi([0.4, 0.3, 0.3], [0.35, 0.25, 0.4]), 6)
    0.044561
    """
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"expected and actual must be 1-d of one length, got {e.shape}, {a.shape}")
    keep = (e > 0) | (a > 0)
    e, a = np.maximum(e[keep], epsilon), np.maximum(a[keep], epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_counts(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """PSI between two vectors of bin counts; an empty bin counts as half a row of its sample."""
    ref, cur = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        raise ValueError("both samples need at least one row")
    keep = (ref > 0) | (cur > 0)
    e = np.where(ref > 0, ref, 0.5)[keep] / n
    a = np.where(cur > 0, cur, 0.5)[keep] / m
    return float(np.sum((a - e) * np.log(a / e)))


def degrees_of_freedom(reference: npt.ArrayLike) -> int:
    """Bins the reference populates, minus one (at least one)."""
    return max(int(np.count_nonzero(np.asarray(reference))) - 1, 1)


def psi_p_value(value: float, n_reference: int, n_current: int, dof: int) -> float:
    """Chance of a PSI at least `value` between two samples of one population (chi-square approx.)."""
    statistic = value / (1.0 / n_reference + 1.0 / n_current)
    return float(chdtrc(dof, statistic))


class Thresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When a PSI counts as drift: see the module docstring for the rule."""

    moderate: float = 0.1
    significant: float = 0.25
    alpha: float = 0.01
    min_rows: int = 300

    @classmethod
    def from_params(cls, params: DriftParams) -> Thresholds:
        return cls(params.moderate, params.significant, params.alpha, params.min_rows)

    def __post_init__(self) -> None:
        if not 0 < self.moderate < self.significant:
            raise ValueError(
                f"need 0 < moderate < significant, got {self.moderate}, {self.significant}"
            )
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be at least 1, got {self.min_rows}")


class LiveSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a server judges its live window, as params.yaml said when the model was profiled."""

    window: int
    thresholds: Thresholds


def classify(value: float, p_value: float, thresholds: Thresholds, tests: int = 1) -> Status:
    """The status of one distribution with PSI `value` (enough rows assumed); `tests` is k."""
    if value < thresholds.moderate:
        return "stable"
    if p_value >= thresholds.alpha / tests:
        return "insufficient_data"
    return "significant" if value >= thresholds.significant else "moderate"


# --------------------------------------------------------------------------- reports


class FeatureDrift(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One feature (or scored class) of a drift check. Rates are shares of all rows checked."""

    kind: Literal["numeric", "categorical", "prediction"]
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


class ModelRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
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
    model: ModelRef
    thresholds: Thresholds
    features: dict[str, FeatureDrift]
    predictions: dict[str, FeatureDrift]
    source: Source | None = None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    def flagged(self, at_least: Status = "moderate") -> list[str]:
        """Names of the features at or above `at_least` (predictions as 'prediction <class>')."""
        rank = SEVERITY[at_least]
        parts = [*self.features.items()]
        parts.extend((f"prediction {k}", v) for k, v in self.predictions.items())
        return [name for name, d in parts if SEVERITY[d.status] >= rank]

    def with_source(self, source: Source) -> DriftReport:
        return msgspec.structs.replace(self, source=source)


def feature_drift(
    kind: Literal["numeric", "categorical", "prediction"],
    reference: IntArray,
    current: IntArray,
    thresholds: Thresholds,
    tests: int = 1,
) -> FeatureDrift:
    """Compare two count vectors in bin order (…, [unseen,] missing); `tests` is k (see module)."""
    n, m = int(reference.sum()), int(current.sum())
    miss_ref = reference[-1] / n if n else 0.0
    miss_cur = current[-1] / m if m else None
    unseen = (current[-2] / m if m else None) if kind == "categorical" else None
    dof = degrees_of_freedom(reference)
    value: float | None = None
    p_value: float | None = None
    status: Status = "insufficient_data"
    if m >= thresholds.min_rows and n > 0:
        value = psi_counts(reference, current)
        p_value = psi_p_value(value, n, m, dof)
        status = classify(value, p_value, thresholds, tests)
    return FeatureDrift(
        kind=kind,
        status=status,
        rows=m,
        psi=value,
        p_value=p_value,
        dof=dof,
        missing_rate_reference=float(miss_ref),
        missing_rate_current=None if miss_cur is None else float(miss_cur),
        missing_rate_change=None if miss_cur is None else float(miss_cur - miss_ref),
        unseen_share=None if unseen is None else float(unseen),
    )


def worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, key=SEVERITY.__getitem__, default="insufficient_data")


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
        self.features[name] += bin_numeric(values, self._edges[name])

    def add_codes(self, name: str, codes: IntArray, dictionary: Sequence[str]) -> None:
        p = self.profile.features[name]
        assert isinstance(p, CategoricalProfile)
        self.features[name] += bin_codes(codes, dictionary, p.categories)

    def add_scores(self, cls: str, values: FloatArray) -> None:
        self.predictions[cls] += bin_numeric(values, self._edges[cls])

    def report(self, thresholds: Thresholds) -> DriftReport:
        return compare(self.profile, self.features, self.predictions, thresholds, self.rows)

    def distributions(self) -> dict[str, list[dict[str, Any]]]:
        """Per feature (and 'prediction_<class>'), rows of reference vs current share per bin."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, counts in self.features.items():
            out[name] = distribution_rows(self.profile.features[name], counts)
        for cls, counts in self.predictions.items():
            if counts.sum():
                out[f"prediction_{cls}"] = distribution_rows(self.profile.predictions[cls], counts)
        return out


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
        model=ModelRef(profile.model_name, profile.model_sha256),
        thresholds=thresholds,
        features=feats,
        predictions=preds,
    )


def check_frame(
    profile: Profile,
    frame: pd.DataFrame,
    thresholds: Thresholds | None = None,
    probabilities: Mapping[str, npt.ArrayLike] | None = None,
) -> DriftReport:
    """Drift of an in-memory frame (one column per profiled feature) against the profile;
    `probabilities` maps a scored class (as a string) to the predicted probability per row."""
    absent = [name for name in profile.features if name not in frame.columns]
    if absent:
        raise SchemaError(f"frame lacks profiled feature column(s): {', '.join(absent)}")
    tally = Tally(profile)
    tally.add_rows(len(frame))
    for name, p in profile.features.items():
        col = frame[name]
        if isinstance(p, NumericProfile):
            values = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            tally.add_numeric(name, values)
        else:
            tally.add_codes(name, *encode_values(col.to_numpy(dtype=object)))
    for cls, scores in (probabilities or {}).items():
        tally.add_scores(cls, np.asarray(scores, dtype=np.float64))
    return tally.report(thresholds or Thresholds())


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
    lines = [
        f"drift check: {report.rows} rows{where} against {report.model.name} "
        f"(sha256 {sha}, {report.reference_rows} reference rows)",
        f"moderate: PSI >= {t.moderate:g}, significant: PSI >= {t.significant:g}, either only if "
        f"unlikely by chance (false-alarm rate {t.alpha:g} per check); under {t.min_rows} rows: "
        "not judged",
        "",
        f"{'feature':<22} {'kind':<11} {'rows':>7} {'psi':>8} {'p-value':>9} "
        f"{'missing':>9} {'unseen':>7}  status",
    ]
    parts = [*report.features.items()]
    parts.extend((f"prediction {cls}", d) for cls, d in report.predictions.items())
    for name, d in parts:
        value = "-" if d.psi is None else f"{d.psi:.4f}"
        p_value = "-" if d.p_value is None else f"{d.p_value:.1e}"
        missing = "-" if d.missing_rate_change is None else f"{d.missing_rate_change:+.1%}"
        unseen = "" if d.unseen_share is None else f"{d.unseen_share:.1%}"
        lines.append(
            f"{name:<22} {d.kind:<11} {d.rows:>7} {value:>8} {p_value:>9} {missing:>9} "
            f"{unseen:>7}  {d.status}"
        )
    flagged = report.flagged()
    summary = f" ({', '.join(flagged)})" if flagged else ""
    lines += ["", f"overall: {report.status}{summary}"]
    if report.source and len(report.source.served_versions) > 1:
        versions = ", ".join(f"{v}: {n}" for v, n in report.source.served_versions.items())
        lines.append(f"note: the log mixes model versions ({versions})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- live sliding window


class LiveWindow:
    """Drift of the last `window` answered rows, updated as rows are answered; built for the server.

    `observe_columns` bins a batch of rows with a few vectorised operations per feature and keeps a
    ring buffer of bin numbers, so evicting the oldest rows is a decrement, never a recount; the
    cost per row is a fraction of a microsecond, so a server can feed it whole batches.
    `snapshot()` returns a `DriftReport` over the rows in the window (PSI, p-value and status per
    feature and per scored class); while a part has fewer than `min_rows` rows it is
    `insufficient_data` with no numbers. Thread-safe: updates and snapshots hold one lock while they
    touch the counts (binning happens before it).

        window = LiveWindow(Profile.decode(path.read_bytes()), window=5000, min_rows=500)
        window.observe([{"age": 41, "contract": "one_year", ...}], [{"0": 0.8, "1": 0.2}])
        window.observe_columns({"age": [41.0, None], ...}, {"1": np.array([0.2, 0.7])})
        snap = window.snapshot()      # snap.rows, snap.status, snap.features["age"].psi, …
    """

    def __init__(
        self,
        profile: Profile,
        window: int = 5000,
        min_rows: int | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 row, got {window}")
        thresholds = thresholds or Thresholds()
        if min_rows is not None:
            thresholds = msgspec.structs.replace(thresholds, min_rows=min_rows)
        if thresholds.min_rows > window:
            raise ValueError(f"min_rows {thresholds.min_rows} exceeds the window of {window} rows")
        self.profile = profile
        self.window = window
        self.thresholds = thresholds
        self._names = list(profile.features)
        self._classes = list(profile.predictions)
        parts: list[FeatureProfile] = [*profile.features.values(), *profile.predictions.values()]
        self._sizes = [len(p.labels()) for p in parts]
        # One flat count vector: part j owns [offset_j, offset_j + size_j); the extra last slot
        # absorbs prediction bins of rows that came without probabilities, and empty ring slots
        # point at it too, so overwriting any slot may decrement what it held unconditionally.
        self._offsets = np.cumsum([0, *self._sizes])[:-1].astype(np.int64)
        self._skip = int(sum(self._sizes))
        self._counts = np.zeros(self._skip + 1, dtype=np.int64)
        self._ring = np.full((window, len(parts)), self._skip, dtype=np.int64)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """Rows currently in the window."""
        return self._filled

    def observe(
        self,
        rows: Sequence[Mapping[str, Any]],
        probabilities: Sequence[Mapping[str, float]] | None = None,
    ) -> None:
        """Add answered rows (feature -> value, None for missing; an absent key is missing) and,
        aligned with them, each row's class probabilities (class label as a string -> probability,
        as the prediction log writes them). Without probabilities a row counts towards feature
        drift only."""
        if probabilities is not None and len(probabilities) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(probabilities)} probability maps")
        columns = {name: [row.get(name) for row in rows] for name in self._names}
        scores = (
            {
                cls: np.array([p.get(cls, np.nan) for p in probabilities], dtype=np.float64)
                for cls in self._classes
            }
            if probabilities is not None
            else {}
        )
        self.observe_columns(columns, scores, len(rows))

    def observe_columns(
        self,
        features: Mapping[str, Sequence[Any] | npt.NDArray[Any]],
        probabilities: Mapping[str, npt.NDArray[np.float64]] | None = None,
        n_rows: int | None = None,
    ) -> None:
        """Add `n_rows` answered rows given column-wise: feature -> values (None or NaN for
        missing; a feature not given is missing in every row) and scored class -> probabilities
        (NaN, or a class not given, leaves that row out of prediction drift)."""
        n = n_rows if n_rows is not None else len(next(iter(features.values()), ()))
        if n == 0:
            return
        keep = min(n, self.window)  # older rows would be evicted by this very call
        bins = np.empty((keep, len(self._sizes)), dtype=np.int64)
        parts = [*self.profile.features.items(), *self.profile.predictions.items()]
        for j, (name, p) in enumerate(parts):
            is_prediction = j >= len(self._names)
            source = (probabilities or {}) if is_prediction else features
            values = source.get(name)
            if values is None:
                bins[:, j] = self._skip if is_prediction else self._offsets[j] + self._sizes[j] - 1
                continue
            if len(values) != n:
                raise ValueError(f"{name!r}: {len(values)} values for {n} rows")
            column = _bin_column(name, p, values[n - keep :])
            if is_prediction:
                bins[:, j] = np.where(
                    column == self._sizes[j] - 1, self._skip, column + self._offsets[j]
                )
            else:
                bins[:, j] = column + self._offsets[j]
        with self._lock:
            slots = (self._next + np.arange(keep)) % self.window
            evicted = self._ring[slots]
            size = self._counts.size
            self._counts -= np.bincount(evicted.ravel(), minlength=size)
            self._counts += np.bincount(bins.ravel(), minlength=size)
            self._ring[slots] = bins
            self._next = int((self._next + keep) % self.window)
            self._filled = min(self.window, self._filled + keep)

    def snapshot(self) -> DriftReport:
        """The drift report of the rows now in the window."""
        with self._lock:
            counts, rows = self._counts.copy(), self._filled
        split = [
            counts[o : o + s] for o, s in zip(self._offsets.tolist(), self._sizes, strict=True)
        ]
        k = len(self._names)
        return compare(
            self.profile,
            dict(zip(self._names, split[:k], strict=True)),
            dict(zip(self._classes, split[k:], strict=True)),
            self.thresholds,
            rows,
        )


def _bin_column(name: str, p: FeatureProfile, values: Sequence[Any] | npt.NDArray[Any]) -> IntArray:
    """Each value's bin within its part (value bins, then unseen for categoricals, then missing)."""
    if isinstance(p, NumericProfile):
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            for v in values:
                try:
                    float(v if v is not None else "nan")
                except (TypeError, ValueError):
                    raise ValueError(f"{name!r}: {v!r} is not a number") from None
            raise
        # searchsorted side="left" on the edges: right-closed bins, as in bin_numeric.
        out = np.searchsorted(np.asarray(p.edges, dtype=np.float64), x, side="left")
        out[np.isnan(x)] = len(p.edges) + 1
        return out.astype(np.int64)
    unseen, absent = len(p.categories), len(p.categories) + 1
    position: dict[Any, int] = {c: i for i, c in enumerate(p.categories)}
    position[None] = absent
    # One dict lookup per value; only what is not found (NaN, a code 3.0 meaning "3", an unseen
    # category) takes the slower path.
    out = np.array([position.get(v, -1) for v in values], dtype=np.int64)
    for i in np.flatnonzero(out < 0).tolist():
        v = values[i]
        if isinstance(v, float) and v != v:
            out[i] = absent
        else:
            out[i] = position.get(category_name(v), unseen)
    return out
