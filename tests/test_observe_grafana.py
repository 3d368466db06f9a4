"""The Grafana dashboard JSON: the panels the issue asks for, well formed, and its
rendered panel list (docs/grafana-panels.md) in step with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "observability"
REQUIRED = [  # the seed's eight panels, plus gateway overhead and time to first token
    "Total cost", "Cost by provider and model", "Cache hit rate over time", "p95 latency",
    "Throughput", "Cache events", "Error rate by class", "Savings over time",
    "Gateway overhead", "Time to first token",
]  # fmt: skip


def test_dashboard_has_the_panels_and_is_well_formed() -> None:
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    titles = [panel["title"] for panel in panels]
    assert set(REQUIRED) <= set(titles)
    assert len(set(titles)) == len(titles)
    assert len({panel["id"] for panel in panels}) == len(panels)
    # the data source is a variable the dashboard defines: imported or provisioned alike
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, panel["title"]  # no two panels overlap
        occupied |= cells
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert "optiroute_" in target["expr"]
            assert target["datasource"] == panel["datasource"]
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_rendered_panel_list_is_up_to_date() -> None:
    rendered = subprocess.run(
        [sys.executable, str(EXAMPLES / "panels.py")], capture_output=True, text=True, check=True
    ).stdout
    assert (ROOT / "docs" / "grafana-panels.md").read_text() == rendered
