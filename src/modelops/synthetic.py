"""Seed in, a realistic synthetic customer-churn frame out, from a documented ground-truth model.

Customers of a telecom: account, usage and demographic features with realistic gaps, and a churn
label drawn from a logistic ground truth with interactions and noise, so a good model reaches a ROC
AUC around 0.82 and never 1.0.

Ground truth (log-odds of churn; `[x]` is 1 when x holds):

    -1.60
    + 1.30·[contract = month-to-month]  − 0.90·[contract = two_year]
    − 0.045·min(tenure_months, 60)      + 0.018·(monthly_charges − 70)
    + 0.30·support_calls                + 0.90·[contract = month-to-month]·[support_calls ≥ 3]
    + 0.50·[payment_method = electronic_check]
    − 0.012·(age − 45)                  + 1.00·[plan = basic]·[data_usage_gb > 25]
    − 0.35·[plan = family]              + region effect (uniform in ±0.25, fixed per region)
    + noise ~ Normal(0, 0.5)

About 28% of customers churn.

Missing values follow the mechanisms real customer tables have: total_charges is missing for
customers in their first month, age is missing more often for customers paying online, and usage
and support counts go missing at random from a lossy export.

A *scenario* shifts the process to simulate production drift with known truth. Each moves exactly
the features listed (a drift check at 2 000-5 000 rows flags these and no others; tests hold it):

    baseline    the training population                       -
    no_drift    a fresh sample of it                            nothing
    campaign    a marketing campaign brings younger customers   age, contract, tenure_months,
                on month-to-month contracts                     total_charges (+ the prediction)
    seasonal    holiday usage: more data, pricier bills         data_usage_gb (a lot),
                                                                monthly_charges (moderately)
    new_region  a new market: region gains an unseen category   region, age (missing far more
                and age goes missing far more often             often)

Knock-on effects are kept immaterial on purpose: campaign customers call support a little more
(support_calls depends on contract and age; PSI about 0.01, ten times below "moderate"), and
seasonal bills do not rewrite history (total_charges accumulates the pre-season monthly charge).
The bundled model's predicted churn moves a lot under campaign only (PSI about 1); seasonal and
new_region leave it nearly where it was (PSI below 0.02), which is itself worth seeing: inputs can
drift without the output following.

A *concept change* moves the truth, not the inputs. `competitor_churn` draws new labels for the
same customers from a changed rule, as if a competitor's cheaper offer had arrived: price now
drives churn, contracts protect less and loyalty counts for little (log-odds):

    -1.20 + 0.60·[contract = month-to-month] + 0.045·(monthly_charges − 70)
    − 0.015·min(tenure_months, 60) + noise ~ Normal(0, 0.5)

About 26% churn, as before, and the inputs are untouched, so a drift check stays quiet; but the
bundled model's ROC AUC on these labels falls from about 0.82 to about 0.66.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Scenario = Literal["baseline", "no_drift", "campaign", "seasonal", "new_region"]
SCENARIOS: tuple[Scenario, ...] = ("baseline", "no_drift", "campaign", "seasonal", "new_region")

CONTRACTS = ("month-to-month", "one_year", "two_year")
PAYMENT_METHODS = ("electronic_check", "mailed_check", "bank_transfer", "credit_card")
PLANS = ("basic", "standard", "premium", "family", "unlimited")
REGIONS = tuple(f"region_{c}" for c in "abcdefghijkl")  # 12 markets
NEW_REGION = "region_m"

_Floats = npt.NDArray[np.float64]

# Scenarios draw from their own stream so that `no_drift` is a fresh sample, not a copy.
_STREAM = {name: i for i, name in enumerate(SCENARIOS)}


def generate_customers(n_rows: int, seed: int, scenario: Scenario = "baseline") -> pd.DataFrame:
    """Return `n_rows` customers with a `customer_id`, ten features and the `churned` label (0/1)."""
    if scenario not in _STREAM:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    rng = np.random.default_rng([seed, _STREAM[scenario]])
    region_effect = np.random.default_rng([seed, 999]).uniform(-0.25, 0.25, len(REGIONS) + 1)
    c = _draw(rng, n_rows, scenario)
    logit = _churn_logit(c, region_effect) + rng.normal(0.0, 0.5, n_rows)
    churned = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    _punch_gaps(rng, c, scenario)
    regions = np.array([*REGIONS, NEW_REGION], dtype=object)
    return pd.DataFrame(
        {
            "customer_id": [
                f"C{seed % 100000:05d}-{_STREAM[scenario]}-{i:07d}" for i in range(n_rows)
            ],
            "tenure_months": c.tenure.astype("int64"),
            "monthly_charges": c.monthly,
            "total_charges": c.total,
            "age": pd.array(c.age, dtype="Int64"),
            "support_calls": pd.array(c.calls, dtype="Int64"),
            "data_usage_gb": c.usage,
            "contract": np.array(CONTRACTS, dtype=object)[c.contract],
            "payment_method": np.array(PAYMENT_METHODS, dtype=object)[c.payment],
            "plan": np.array(PLANS, dtype=object)[c.plan],
            "region": regions[c.region],
            "churned": churned,
        }
    )


@dataclass
class _Customers:
    """The drawn columns, categories as their positions in CONTRACTS, PLANS, ..."""

    contract: npt.NDArray[np.int64]
    age: _Floats
    tenure: _Floats
    plan: npt.NDArray[np.int64]
    monthly: _Floats
    usage: _Floats
    total: _Floats
    payment: npt.NDArray[np.int64]
    region: npt.NDArray[np.int64]
    calls: _Floats


def _draw(rng: np.random.Generator, n: int, scenario: Scenario) -> _Customers:
    """Every feature, drawn in one fixed order from `rng` (the order is part of the data)."""
    contract_p = [0.85, 0.10, 0.05] if scenario == "campaign" else [0.55, 0.25, 0.20]
    contract = rng.choice(len(CONTRACTS), n, p=contract_p)

    age_mean = 32.0 if scenario == "campaign" else 46.0
    age = np.clip(rng.normal(age_mean, 13.0, n), 18, 90).round()

    # Longer contracts go with longer tenure; campaign customers are new.
    tenure_scale = np.array([14.0, 30.0, 45.0])[contract]
    if scenario == "campaign":
        tenure_scale = tenure_scale * 0.25
    tenure = np.clip(rng.exponential(tenure_scale), 0, 72).round()

    plan = rng.choice(len(PLANS), n, p=[0.30, 0.30, 0.15, 0.15, 0.10])
    plan_price = np.array([35.0, 60.0, 90.0, 80.0, 105.0])[plan]
    monthly = plan_price + rng.normal(0.0, 8.0, n)
    usage_scale = np.array([8.0, 15.0, 25.0, 30.0, 45.0])[plan]
    usage = rng.gamma(2.0, usage_scale / 2.0, n)
    # Past months were billed at the usual price: a seasonal shift moves this month's bill only.
    billed_before = np.clip(monthly, 18.0, 150.0).round(2)
    if scenario == "seasonal":
        usage = usage * 1.8 + 6.0
        monthly = monthly + 7.0

    total = (tenure * billed_before * rng.normal(1.0, 0.03, n)).round(2)
    payment = rng.choice(len(PAYMENT_METHODS), n, p=[0.35, 0.20, 0.22, 0.23])
    region_p = np.linspace(1.6, 0.6, len(REGIONS))
    region = rng.choice(len(REGIONS), n, p=region_p / region_p.sum())
    if scenario == "new_region":
        region = np.where(rng.random(n) < 0.3, len(REGIONS), region)

    # Month-to-month and older customers call support more.
    call_rate = 0.8 + 0.6 * (contract == 0) + 0.01 * (age - 45).clip(0)
    calls = rng.poisson(call_rate).astype("float64")
    monthly = np.clip(monthly, 18.0, 150.0).round(2)
    return _Customers(
        contract, age, tenure, plan, monthly, usage.round(2), total, payment, region, calls
    )


def _churn_logit(c: _Customers, region_effect: _Floats) -> _Floats:
    """The log-odds of churning, before the noise term."""
    logit: _Floats = (
        -1.60
        + 1.30 * (c.contract == 0)
        - 0.90 * (c.contract == 2)
        - 0.045 * np.minimum(c.tenure, 60)
        + 0.018 * (c.monthly - 70.0)
        + 0.30 * c.calls
        + 0.90 * (c.contract == 0) * (c.calls >= 3)
        + 0.50 * (c.payment == 0)
        - 0.012 * (c.age - 45.0)
        + 1.00 * (c.plan == 0) * (c.usage > 25.0)
        - 0.35 * (c.plan == 3)
        + region_effect[c.region]
    )
    return logit


def _punch_gaps(rng: np.random.Generator, c: _Customers, scenario: Scenario) -> None:
    """Gaps, drawn after the label so they hide information the label was built from."""
    c.total[c.tenure == 0] = np.nan
    online = (c.payment == 0) | (c.payment == 3)
    age_missing_p = np.where(online, 0.08, 0.03)
    if scenario == "new_region":
        age_missing_p = age_missing_p + 0.25
    c.age[rng.random(len(c.age)) < age_missing_p] = np.nan
    c.usage[rng.random(len(c.usage)) < 0.03] = np.nan
    c.calls[rng.random(len(c.calls)) < 0.02] = np.nan


def competitor_churn(frame: pd.DataFrame, seed: int) -> npt.NDArray[np.int64]:
    """Churn labels (0/1) for `frame`'s customers under the changed concept (see the docstring);
    only gap-free columns enter the rule, so every customer gets a label."""
    rng = np.random.default_rng([seed, 1000])
    n = len(frame)
    logit = (
        -1.20
        + 0.60 * (frame["contract"].to_numpy() == CONTRACTS[0])
        + 0.045 * (frame["monthly_charges"].to_numpy(np.float64) - 70.0)
        - 0.015 * np.minimum(frame["tenure_months"].to_numpy(np.float64), 60)
        + rng.normal(0.0, 0.5, n)
    )
    return (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
