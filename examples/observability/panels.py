"""The Grafana dashboard's panel list, rendered from grafana-dashboard.json.

python examples/observability/panels.py            # Markdown (docs/grafana-panels.md)
python examples/observability/panels.py --html     # the panel grid as an HTML page
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads((HERE / "grafana-dashboard.json").read_text())
    return sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))


def markdown() -> str:
    lines = [
        "# Grafana dashboard: panels",
        "",
        "Rendered from `examples/observability/grafana-dashboard.json` by",
        "`python examples/observability/panels.py` (a test keeps the two in step).",
        "",
        "| # | panel | type | unit | PromQL |",
        "|---|---|---|---|---|",
    ]
    for number, panel in enumerate(panels(), 1):
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        queries = "<br>".join(
            f"`{t['expr'].replace('|', chr(92) + '|')}`" for t in panel["targets"]
        )
        lines.append(f"| {number} | {panel['title']} | {panel['type']} | {unit} | {queries} |")
    return "\n".join(lines) + "\n"


def page() -> str:
    cells = []
    for panel in panels():
        grid = panel["gridPos"]
        column = f"grid-column:{grid['x'] + 1}/span {grid['w']}"
        place = f"{column};grid-row:{grid['y'] + 1}/span {grid['h']}"
        queries = "".join(f"<code>{html.escape(t['expr'])}</code>" for t in panel["targets"])
        cells.append(
            f'<div class="panel" style="{place}"><b>{html.escape(panel["title"])}</b>'
            f"<i>{panel['type']}</i>{queries}</div>"
        )
    style = (
        "body{margin:0;padding:12px;background:#111217;font:13px system-ui,sans-serif;"
        "color:#ccccdc}.grid{display:grid;grid-template-columns:repeat(24,1fr);"
        "grid-auto-rows:18px;gap:8px}.panel{background:#181b1f;border:1px solid #2a2d33;"
        "border-radius:4px;padding:8px;overflow:hidden}.panel b{display:block;color:#fff}"
        ".panel i{color:#8e8e9a;font-size:11px}code{display:block;margin-top:6px;"
        "font-size:10px;color:#73bf69;white-space:pre-wrap;word-break:break-all}"
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>optiroute-mw panels</title>"
        f'<style>{style}</style><div class="grid">{"".join(cells)}</div>'
    )


if __name__ == "__main__":
    sys.stdout.write(page() if "--html" in sys.argv else markdown())
