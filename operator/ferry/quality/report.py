"""The quality report: JSON for machines, one self-contained HTML page for people (inline CSS, no
scripts): per slice one table with a row per metric and the model versions side by side."""

from __future__ import annotations

import json
from html import escape

VERDICT_COLOURS = {"Healthy": "#27ae60", "Degraded": "#c0392b", "Inconclusive": "#7f8c8d"}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px}h2{font-size:17px;margin:18px 0 6px}
.badge{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
table{border-collapse:collapse}td,th{text-align:left;padding:3px 12px 3px 0;font-size:13px}
td.estimated{font-style:italic;color:#555}.breach{color:#c0392b;font-weight:600}
"""


def to_json(report: dict) -> bytes:
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False).encode()


def _badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{VERDICT_COLOURS[verdict]}">{verdict}</span>'


def _cell(metric: dict | None) -> str:
    if metric is None or metric["value"] is None:
        title = escape((metric or {}).get("message") or "")
        return f'<td title="{title}">–</td>'
    text = f"{metric['value']:.4g}" + (" (est.)" if metric["estimated"] else "")
    classes = "estimated" if metric["estimated"] else ""
    message = metric.get("message") or ""
    if " < min " in message or " > max " in message:
        classes += " breach"
    return f'<td class="{classes.strip()}" title="{escape(message)}">{escape(text)}</td>'


def _table(title: str, groups: list[tuple[str, dict | None]]) -> str:
    """One slice (or the whole versions): a column per version."""
    head = "".join(f"<th>{escape(version)}</th>" for version, _ in groups)
    verdicts = "".join(f"<td>{_badge(g['verdict']) if g else '–'}</td>" for _, g in groups)
    coverage = "".join(
        f"<td>{g['coverage']['labelled']} / {g['coverage']['predicted']}</td>" if g else "<td>–</td>"
        for _, g in groups)
    names = list(dict.fromkeys(m["name"] for _, g in groups if g for m in g["metrics"]))
    rows = "".join(
        f"<tr><th>{escape(name)}</th>" + "".join(
            _cell(next((m for m in g["metrics"] if m["name"] == name), None) if g else None)
            for _, g in groups) + "</tr>" for name in names)
    return (f'<section><h2>{escape(title)}</h2><table><tr><th></th>{head}</tr>'
            f"<tr><th>verdict</th>{verdicts}</tr><tr><th>labelled / predicted</th>{coverage}</tr>"
            f"{rows}</table></section>")


def to_html(report: dict) -> bytes:
    versions = report["versions"]
    sections = [_table("All rows", [(v["version"], v) for v in versions])]
    names = list(dict.fromkeys(s["name"] for v in versions for s in v["slices"]))
    for name in names:
        sections.append(_table(f"Slice {name}", [
            (v["version"], next((s for s in v["slices"] if s["name"] == name), None))
            for v in versions]))
    summary = [("message", report["message"]), ("task", report["task"]),
               ("window", report.get("window")), ("join window", report.get("joinWindow")),
               ("time", report.get("lastRunAt")), ("run", report.get("runId"))]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                   for k, v in summary if v is not None)
    title = f"Quality report: {report.get('subject') or ''}".rstrip(": ")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{escape(title)} {_badge(report['verdict'])}</h1><table>{rows}</table>"
            f"<p>Estimated values (est.) are CBPE estimates over rows still waiting for labels.</p>"
            f"{''.join(sections)}</body></html>").encode()
