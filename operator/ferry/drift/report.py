"""The drift report: JSON for machines, one self-contained HTML page for people.

The HTML has no external assets and no JavaScript: inline CSS and one inline SVG chart per compared
column (reference vs current share per bin or category), drifted columns first.
"""

from __future__ import annotations

import json
from html import escape

CHART_WIDTH, CHART_HEIGHT, MARGIN = 560, 170, 24
REFERENCE_COLOUR, CURRENT_COLOUR = "#6b8fb5", "#e8833a"
VERDICT_COLOURS = {"Drifted": "#c0392b", "NoDrift": "#27ae60", "Inconclusive": "#7f8c8d"}


def to_json(report: dict) -> bytes:
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False,
                      default=_json_default).encode()


def _json_default(value):
    return float(value)  # numpy scalars


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "–"
    return "–" if value is None else str(value)


def chart(column: dict) -> str:
    """Reference and current shares side by side, one pair of bars per bin/category."""
    histogram = column["histogram"]
    reference, current = _shares(histogram["reference"]), _shares(histogram["current"])
    bins = len(reference)
    top = max(reference + current + [1e-12])
    plot_w, plot_h = CHART_WIDTH - 2 * MARGIN, CHART_HEIGHT - 2 * MARGIN
    slot = plot_w / bins
    bars = []
    for index, (ref, cur) in enumerate(zip(reference, current, strict=True)):
        x = MARGIN + index * slot
        for offset, share, colour in ((0.1, ref, REFERENCE_COLOUR), (0.5, cur, CURRENT_COLOUR)):
            height = plot_h * share / top
            bars.append(f'<rect x="{x + offset * slot:.1f}" y="{MARGIN + plot_h - height:.1f}" '
                        f'width="{0.4 * slot:.1f}" height="{height:.1f}" fill="{colour}"/>')
    if histogram["type"] == "numeric":
        edges = histogram["edges"]
        labels = (f'<text x="{MARGIN}" y="{CHART_HEIGHT - 6}" font-size="10">{edges[0]:.4g}</text>'
                  f'<text x="{CHART_WIDTH - MARGIN}" y="{CHART_HEIGHT - 6}" font-size="10" '
                  f'text-anchor="end">{edges[-1]:.4g}</text>')
    else:
        labels = "".join(
            f'<text x="{MARGIN + (i + 0.5) * slot:.1f}" y="{CHART_HEIGHT - 6}" font-size="9" '
            f'text-anchor="middle">{escape(name[:10])}</text>'
            for i, name in enumerate(histogram["categories"])) if bins <= 15 else ""
    axis = (f'<line x1="{MARGIN}" y1="{MARGIN + plot_h}" x2="{CHART_WIDTH - MARGIN}" '
            f'y2="{MARGIN + plot_h}" stroke="#333"/>')
    legend = (f'<rect x="{CHART_WIDTH - 170}" y="4" width="10" height="10" '
              f'fill="{REFERENCE_COLOUR}"/><text x="{CHART_WIDTH - 156}" y="13" font-size="10">'
              f'reference</text><rect x="{CHART_WIDTH - 90}" y="4" width="10" height="10" '
              f'fill="{CURRENT_COLOUR}"/><text x="{CHART_WIDTH - 76}" y="13" font-size="10">'
              f'current</text>')
    return (f'<svg class="chart" data-feature="{escape(column["name"])}" '
            f'xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
            f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
            f'aria-label="{escape(column["name"])}: reference vs current">'
            f'{legend}{"".join(bars)}{axis}{labels}</svg>')


def _column_section(column: dict) -> str:
    rows = [("verdict", column["verdict"]), ("method", column["method"]),
            ("score", column["score"]), ("threshold", column["threshold"]),
            ("reasons", column["reasons"]), ("type", column["reference_type"]),
            ("values (reference / current)",
             f'{column["reference_rows"]} / {column["current_rows"]}'),
            ("null rate (reference / current)",
             f'{_format(column["reference_null_rate"])} / {_format(column["current_null_rate"])}')]
    rows += list(column["statistics"].items())
    table = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_format(v))}</td></tr>"
                    for k, v in rows)
    colour = VERDICT_COLOURS[column["verdict"]]
    body = chart(column) if column.get("histogram") else "<p class='none'>no chart</p>"
    role = " (prediction)" if column["role"] == "prediction" else ""
    return (f'<section class="column" id="col-{escape(column["name"])}"><h2>'
            f'{escape(column["name"])}{role} <span class="badge" style="background:{colour}">'
            f'{column["verdict"]}</span></h2><div class="body">{body}<table>{table}</table>'
            f"</div></section>")


ORDER = {"Drifted": 0, "Inconclusive": 1, "NoDrift": 2}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
.badge{color:#fff;border-radius:4px;padding:2px 8px;font-size:13px;vertical-align:middle}
.summary td,.summary th,.column td,.column th{text-align:left;padding:2px 10px 2px 0;font-size:13px}
.column{border:1px solid #ddd;border-radius:6px;padding:12px;margin:12px 0}
.body{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.none{color:#888}
"""


def to_html(report: dict) -> bytes:
    colour = VERDICT_COLOURS[report["verdict"]]
    columns = sorted(report["columns"], key=lambda c: (c["role"] != "feature",
                                                        ORDER[c["verdict"]], c["name"]))
    schema = report["schema"]
    summary = [("message", report["message"]),
               ("reference", f'{report["reference"]["uri"]} ({report["reference"]["rows"]} rows)'),
               ("current", f'{report["current"]["uri"]} ({report["current"]["rows"]} rows)'),
               ("window", report.get("window")), ("time", report.get("time")),
               ("drifted features", sorted(report["driftedFeatures"])),
               ("missing columns", schema["missing"]), ("retyped columns", schema["retyped"]),
               ("unknown columns", schema["unknown"])]
    summary_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_format(v))}</td></tr>"
                           for k, v in summary if v is not None)
    title = f'Drift report: {report.get("subject") or report["current"]["uri"]}'
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f'<h1>{escape(title)} <span class="badge" style="background:{colour}">'
            f'{report["verdict"]}</span></h1><table class="summary">{summary_rows}</table>'
            f'{"".join(_column_section(c) for c in columns)}</body></html>').encode()
