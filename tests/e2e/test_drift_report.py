"""The drift report in a real browser: Chromium, headless, with the network off, opens the page the
drift stage wrote and the one `modelops drift report` writes, draws every chart, logs no error,
fetches nothing, and sorts the table when a header is clicked. Screenshots stay in the tmp dir."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelops import paths
from tests.browser import chromium
from tests.conftest import require_tool, run

CHARTS = """[...document.querySelectorAll("svg.dist")].map(svg => {
  const box = svg.getBoundingClientRect();
  const bars = [...svg.querySelectorAll("rect.ref, rect.cur")].filter(r => r.closest("g"));
  return {name: svg.getAttribute("aria-label"), width: box.width, height: box.height,
          bars: bars.length, drawn: bars.filter(r => r.getBBox().width > 0).length};
})"""
FIRST_COLUMN = (
    """[...document.querySelectorAll("#parts tbody tr")].map(r => r.cells[0].textContent)"""
)


def parts(report: dict) -> list[str]:
    return [*report["features"], *(f"prediction {c}" for c in report["predictions"])]


@pytest.mark.parametrize("source", ["stage", "command"])
def test_the_report_renders_offline_in_chromium_with_every_chart(
    reproduced_repo: Path, tmp_path: Path, source: str
) -> None:
    browser = require_tool("chromium")
    if source == "stage":  # the stage's page: the no_drift batch, scored by the model
        page_file = reproduced_repo / paths.DRIFT_HTML
        report = json.loads((reproduced_repo / paths.DRIFT).read_text())
    else:  # a drifted batch judged by the command, written outside the repository
        page_file = tmp_path / "drift.html"
        batch = ["--incoming", str(paths.scenario_path("campaign"))]
        out = run("modelops", "drift", "report", "--out", page_file, *batch, cwd=reproduced_repo)
        assert out.stdout.startswith(f"{page_file}: ") and "drift: significant" in out.stdout
        check = run("modelops", "drift", "check", "--json", *batch, cwd=reproduced_repo)
        report = json.loads(check.stdout)
    text = page_file.read_text()
    assert not re.search(r"https?:|<link|\bsrc=|url\(|@import", text)  # nothing to fetch

    with chromium(browser, tmp_path) as page:
        page.open(page_file.as_uri())
        page.wait_for("document.body.dataset.ready === '1'")  # the page's script ran to its end
        charts = page.evaluate(CHARTS)
        assert [c["name"] for c in charts] == parts(report)
        for chart in charts:
            assert chart["width"] > 300 and chart["height"] > 40, chart
            assert chart["bars"] >= 4 and chart["drawn"] >= 2, chart  # two samples, shares > 0
        page.screenshot(tmp_path / f"drift_report_{source}.png", width=1200)

        rows = page.evaluate(FIRST_COLUMN)
        assert sorted(rows) == sorted(parts(report))
        page.evaluate("""document.querySelector("#parts th:nth-child(4)").click()""")  # PSI
        psi = {name: report["features"].get(name, {}).get("psi") for name in rows}
        psi.update({f"prediction {c}": d["psi"] for c, d in report["predictions"].items()})
        by_psi = page.evaluate(FIRST_COLUMN)
        assert by_psi == sorted(rows, key=lambda n: -psi[n])
        page.evaluate("""document.querySelector("#parts th:nth-child(4)").click()""")
        assert page.evaluate(FIRST_COLUMN) == by_psi[::-1]

        assert page.problems() == []
        assert page.requests() == [page_file.as_uri()]
    shot = (tmp_path / f"drift_report_{source}.png").read_bytes()
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000
