"""A drift report and its per-bin distributions in; one self-contained HTML page out.

The page opens anywhere, offline: no CDN, no fonts, no images to fetch, nothing that names a URL.
The charts are inline SVG drawn here, and the only script is a few lines that sort the table.

Why our own SVG rather than a plotting library that inlines itself: a grouped bar chart of shares
on frozen bins is twenty lines of rectangles; Plotly with `include_plotlyjs=True` adds ~3.5 MB of
JavaScript to every report and draws nothing until that script runs, and Vega-Lite needs vega,
vega-lite and vega-embed inlined (~1 MB) for the same picture. Plotly also writes a random id per
figure, so two runs would not give the same bytes, and `dvc repro` promises they do. Here the
page is a few tens of kilobytes, identical for identical inputs, and the charts are there even
with JavaScript off (only sorting needs it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from modelops.drift.report import DriftReport, FeatureDrift, prediction_part
from modelops.drift.status import SEVERITY, STATUS_COLORS, STATUSES

_CHART_WIDTH = 440
_BAR = 7  # px per bar; a bin is a reference bar over a current bar
_ROW = 2 * _BAR + 5
_TOP = 22  # the legend
_BOTTOM = 16  # the axis labels
_LABEL_CHARS = 24  # longer bin labels are cut (the whole label is in the tooltip)

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;color:#1b1f23;margin:24px;max-width:1180px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:14px;margin:0 0 6px}
.verdict{border-left:8px solid var(--c);background:#f6f8fa;padding:12px 16px}
.verdict p{margin:2px 0}.muted{color:#57606a}
.badge{display:inline-block;padding:0 7px;border-radius:9px;background:var(--c);color:#fff;font-size:12px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;border-bottom:1px solid #d0d7de;text-align:right;white-space:nowrap}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{cursor:pointer;user-select:none;background:#f6f8fa}
th[aria-sort=descending]::after{content:" \\25BC"}th[aria-sort=ascending]::after{content:" \\25B2"}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px}
.chart{border:1px solid #d0d7de;border-top:4px solid var(--c);padding:8px 10px}
svg.dist{max-width:100%;height:auto}svg text{font-size:11px;fill:#1b1f23}svg .axis{fill:#57606a}
.ref{fill:#a8b3bd}.cur{fill:#1f6feb}.grid{stroke:#d0d7de}
"""

# Sorts the table by the clicked column: numbers by data-v (empty last), text as text. First click
# sorts numbers high to low, the worst first, like the table's initial order.
_SCRIPT = """
for (const th of document.querySelectorAll("#parts th")) {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0], i = th.cellIndex, num = th.dataset.num === "1";
    const was = th.getAttribute("aria-sort");
    const dir = was === "descending" ? 1 : was === "ascending" ? -1 : num ? -1 : 1;
    for (const h of th.parentNode.cells) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir < 0 ? "descending" : "ascending");
    const key = r => { const c = r.cells[i]; return num ? parseFloat(c.dataset.v) : c.textContent; };
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b);
      if (!num) return dir * x.localeCompare(y);
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
      return dir * (x - y);
    });
    body.append(...rows);
  });
}
document.body.dataset.ready = "1";
"""

_COLUMNS = (  # header, numeric (sortable by data-v)
    ("feature", False),
    ("kind", False),
    ("rows", True),
    ("PSI", True),
    ("p-value", True),
    ("missing: reference → current", True),
    ("unseen", True),
    ("status", True),
)


def render(report: DriftReport, distributions: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The report as one HTML page. `distributions` holds the long-form rows {bin, sample, share}
    the drift stage plots, by feature name and `prediction_part(class)`; a part without rows is
    drawn as a note, not silently left out."""
    title = f"Drift of {report.model.name}: {report.status}"
    status_css = "".join(f".s-{s}{{--c:{STATUS_COLORS[s]}}}" for s in STATUSES)
    features = [_chart(n, d, distributions.get(n)) for n, d in report.features.items()]
    predictions = [
        _chart(f"prediction {cls}", d, distributions.get(prediction_part(cls)))
        for cls, d in report.predictions.items()
    ]
    body = [
        _verdict(report),
        "<h2>Features and predictions</h2>",
        _table(report),
        "<h2>Features: reference vs current share of rows per frozen bin</h2>",
        f'<div class="charts">{"".join(features)}</div>',
    ]
    if predictions:
        body += [
            "<h2>Predictions: the predicted probability of each scored class</h2>",
            f'<div class="charts">{"".join(predictions)}</div>',
        ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}{status_css}</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _verdict(report: DriftReport) -> str:
    t = report.thresholds
    flagged = report.flagged()
    source = report.source
    where = f" of {escape(source.path)}" if source else ""
    if source and source.files > 1:
        where += f" ({source.files} files)"
    sha = (report.model.sha256 or "unknown")[:12]
    lines = [
        f"<h1>Drift of {escape(report.model.name)}: {escape(report.status.replace('_', ' '))}</h1>",
        f"<p>{len(flagged)} of {len(report.parts())} flagged"
        + (f": {escape(', '.join(flagged))}" if flagged else "")
        + "</p>",
        f"<p>{report.rows} rows{where} against the profile of model "
        f"<b>{escape(report.model.name)}</b> (sha256 {sha}, {report.reference_rows} reference "
        "rows)</p>",
        f'<p class="muted">moderate: PSI ≥ {t.moderate:g}, significant: PSI ≥ {t.significant:g}, '
        f"either only when unlikely by chance (false-alarm rate {t.alpha:g} per check); "
        f"under {t.min_rows} rows: not judged</p>",
    ]
    if source and len(source.served_versions) > 1:
        versions = ", ".join(f"{v}: {n}" for v, n in source.served_versions.items())
        lines.append(f"<p>The log mixes model versions ({escape(versions)}).</p>")
    return f'<header class="verdict s-{report.status}">{"".join(lines)}</header>'


def _table(report: DriftReport) -> str:
    parts = sorted(
        report.parts(), key=lambda p: (-SEVERITY[p[1].status], -(p[1].psi or 0.0))
    )  # the worst first; sorted() keeps the report's order among equals
    head = "".join(
        "<th"
        + (' data-num="1"' if num else "")
        + (' aria-sort="descending"' if name == "status" else "")
        + f">{escape(name)}</th>"
        for name, num in _COLUMNS
    )
    rows = "".join(_row(name, d) for name, d in parts)
    return f'<table id="parts"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _row(name: str, d: FeatureDrift) -> str:
    def num(value: float | None, text: str) -> str:
        return f'<td data-v="{"" if value is None else repr(value)}">{text}</td>'

    missing = (
        f"{d.missing_rate_reference:.1%} → {d.missing_rate_current:.1%}"
        if d.missing_rate_current is not None
        else "-"
    )
    return (
        f'<tr><td><a href="#{_anchor(name)}">{escape(name)}</a></td><td>{d.kind}</td>'
        + num(d.rows, str(d.rows))
        + num(d.psi, "-" if d.psi is None else f"{d.psi:.4f}")
        + num(d.p_value, "-" if d.p_value is None else f"{d.p_value:.1e}")
        + num(d.missing_rate_change, missing)
        + num(d.unseen_share, "" if d.unseen_share is None else f"{d.unseen_share:.1%}")
        + f'<td data-v="{SEVERITY[d.status]}"><span class="badge s-{d.status}">'
        f"{d.status}</span></td></tr>"
    )


def _anchor(name: str) -> str:
    return "part-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _chart(name: str, d: FeatureDrift, rows: Sequence[Mapping[str, Any]] | None) -> str:
    psi = "" if d.psi is None else f" · PSI {d.psi:.4f}"
    head = (
        f'<h3>{escape(name)} <span class="badge s-{d.status}">{d.status}</span>'
        f'<span class="muted">{psi} · {d.rows} rows</span></h3>'
    )
    body = _svg(name, rows) if rows else '<p class="muted">no distribution recorded</p>'
    return f'<section class="chart s-{d.status}" id="{_anchor(name)}">{head}{body}</section>'


def _svg(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Reference and current share of rows per bin, as horizontal bar pairs on one scale."""
    bins: dict[str, dict[str, float]] = {}
    for row in rows:
        bins.setdefault(str(row["bin"]), {})[str(row["sample"])] = float(row["share"])
    longest = max(len(_cut(b)) for b in bins)
    label_w = min(10 + 6.2 * longest, 180.0)
    plot_w = _CHART_WIDTH - label_w - 12
    top_share = max(max(s.values(), default=0.0) for s in bins.values())
    scale = max(math.ceil(top_share * 20) / 20, 0.05)  # the axis ends at the next 5%
    height = _TOP + _ROW * len(bins) + _BOTTOM

    def x(share: float) -> str:
        return f"{label_w + plot_w * share / scale:.1f}"

    parts = [
        f'<svg class="dist" role="img" aria-label="{escape(name)}" width="{_CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_CHART_WIDTH} {height}">',
        f'<rect class="ref" x="{label_w:.1f}" y="4" width="10" height="8"/>'
        f'<text x="{label_w + 14:.1f}" y="12">reference</text>'
        f'<rect class="cur" x="{label_w + 84:.1f}" y="4" width="10" height="8"/>'
        f'<text x="{label_w + 98:.1f}" y="12">current</text>',
    ]
    bottom = _TOP + _ROW * len(bins)
    for tick in (0.0, scale / 2, scale):
        parts.append(
            f'<line class="grid" x1="{x(tick)}" x2="{x(tick)}" y1="{_TOP - 2}" y2="{bottom}"/>'
            f'<text class="axis" x="{x(tick)}" y="{bottom + 12}" text-anchor="middle">'
            f"{tick * 100:g}%</text>"
        )
    for i, (label, shares) in enumerate(bins.items()):
        y = _TOP + i * _ROW
        ref, cur = shares.get("reference", 0.0), shares.get("current", 0.0)
        parts.append(
            f"<g><title>{escape(label)}: reference {ref:.1%}, current {cur:.1%}</title>"
            f'<text x="{label_w - 6:.1f}" y="{y + _BAR + 3}" text-anchor="end">'
            f"{escape(_cut(label))}</text>"
            f'<rect class="ref" x="{label_w:.1f}" y="{y}" width="{plot_w * ref / scale:.1f}" '
            f'height="{_BAR}"/>'
            f'<rect class="cur" x="{label_w:.1f}" y="{y + _BAR}" '
            f'width="{plot_w * cur / scale:.1f}" height="{_BAR}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _cut(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"
