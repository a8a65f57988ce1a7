"""README's serving table is rendered from the serving benchmark's JSON (tests/bench/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import BEGIN, END, main, render, summarize, update_readme

README = Path(__file__).resolve().parents[2] / "README.md"


def run(kind, config, protocol, rps, p99, turn, rows=1, connections=32, model="rf100"):
    return {"model": model, "kind": kind, "config": config, "protocol": protocol, "rows": rows,
            "connections": connections, "round": turn, "rps": rps, "p50_ms": p99 / 2, "p99_ms": p99,
            "errors": 0}


def server(kind, config, startup, rss, model="rf100"):
    return {"model": model, "kind": kind, "config": config, "startup_s": startup, "rss_idle_mib": rss,
            "rss_loaded_mib": rss + 10, "uss_loaded_mib": rss / 2}


@pytest.fixture
def document():
    runs = []
    for turn, (ferry1, ferry2, mlflow, batch, plain) in enumerate(
            [(900, 1500, 100, 400, 300), (1000, 1700, 120, 500, 350), (1100, 1600, 80, 450, 250)], 1):
        runs += [run("ferry", "--workers 1", "invocations", ferry1, 30, turn),
                 run("ferry", "--workers auto (2)", "invocations", ferry2, 20, turn),
                 run("mlflow", "--workers 1", "invocations", mlflow, 900, turn),
                 run("ferry", "--workers auto (2)", "v2", ferry2 + 100, 18, turn),
                 run("mlserver", "parallel_workers=1, batching", "v2", batch, 60, turn),
                 run("mlserver", "parallel_workers=1", "v2", plain, 80, turn)]
    return {"settings": {"seconds": 5, "rounds": 3, "matrix": "quick", "rows": [1], "connections": [32],
                         "cpus": 2, "load_average": 1.5,
                         "versions": {"mlflow": "3.0", "scikit-learn": "1.9", "mlserver": "1.7.1"}},
            "servers": [server("ferry", "--workers 1", 4.0, 200),
                        server("ferry", "--workers auto (2)", 4.5, 300),
                        server("mlflow", "--workers 1", 16.0, 550),
                        server("mlserver", "parallel_workers=1, batching", 9.0, 400),
                        server("mlserver", "parallel_workers=1", 8.5, 390)],
            "runs": runs}


def test_summary_takes_median_and_spread_over_rounds(document):
    points = {(p["kind"], p["config"], p["protocol"]): p for p in summarize(document["runs"])}
    mlflow = points[("mlflow", "--workers 1", "invocations")]
    assert mlflow["rounds"] == 3
    assert mlflow["rps"] == {"median": 100, "min": 80, "max": 120}
    assert points[("ferry", "--workers auto (2)", "v2")]["rps"]["median"] == 1700


def test_render_compares_each_family_best_configuration(document):
    table = render(document)
    rows = [line for line in table.splitlines() if line.startswith("| rf100")]
    assert len(rows) == 2
    invocations, v2 = rows
    assert "`/invocations`" in invocations and "mlflow models serve" in invocations
    assert "`--workers auto (2)`" in invocations and "1,600 req/s (1,500–1,700)" in invocations
    assert invocations.endswith("| ×16.0 |")
    assert "OIP v2" in v2 and "MLServer: 450 req/s (400–500)" in v2
    assert "`parallel_workers=1, batching`" in v2 and v2.endswith("| ×3.8 |")
    assert "the median of 3 interleaved rounds (min–max in brackets) × 5 s" in table
    assert "| MLServer `parallel_workers=1` | 8.5 s | 400 MiB | 195 MiB |" in table


def test_render_of_one_round_has_no_spread(document):
    document["runs"] = [run for run in document["runs"] if run["round"] == 1]
    document["settings"]["rounds"] = 1
    table = render(document)
    assert "one round × 5 s" in table and "min–max" not in table
    assert "| 1,500 req/s, p99 20 ms; `--workers auto (2)` |" in table


def test_update_replaces_only_between_markers(document, tmp_path):
    text = f"intro\n{BEGIN}\nold figures\n{END}\noutro\n"
    updated = update_readme(text, document)
    assert "old figures" not in updated
    assert updated.startswith(f"intro\n{BEGIN}\n") and updated.endswith(f"\n{END}\noutro\n")
    assert update_readme(updated, document) == updated
    with pytest.raises(ValueError):
        update_readme("no markers here", document)
    results, readme = tmp_path / "serving.json", tmp_path / "README.md"
    results.write_text(json.dumps(document))
    readme.write_text(text)
    main([str(results), str(readme)])
    assert readme.read_text() == updated


def test_readme_has_the_generated_serving_section():
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)
