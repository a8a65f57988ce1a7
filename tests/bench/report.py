"""The serving benchmark's figures from its JSON (``test_bench_serving.py``): the summary over the
rounds, the BENCH table it prints, and README's serving table, so the README never carries figures
typed by hand.

``python tests/bench/report.py RESULTS.json [README.md]`` rewrites what lies between
``<!-- bench:serving -->`` and ``<!-- /bench:serving -->`` in README.md.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:serving -->", "<!-- /bench:serving -->"
# Which peer ferry serve is compared with on each protocol.
PEERS = {"invocations": "mlflow", "v2": "mlserver"}
NAMES = {"ferry": "ferry serve", "mlflow": "mlflow models serve", "mlserver": "MLServer"}
PROTOCOLS = {"invocations": "`/invocations`", "v2": "OIP v2"}
POINT = ("model", "kind", "config", "protocol", "rows", "connections")


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> list[dict]:
    """One entry per server configuration and point: median and min–max over the rounds."""
    grouped: dict[tuple, list[dict]] = {}
    for run in runs:
        grouped.setdefault(tuple(run[key] for key in POINT), []).append(run)
    return [{**dict(zip(POINT, key, strict=True)), "rounds": len(group),
             "rps": spread([run["rps"] for run in group]),
             "p99_ms": spread([run["p99_ms"] for run in group])}
            for key, group in grouped.items()]


def best(points: list[dict]) -> dict[tuple, dict]:
    """Each server family's winning configuration (highest median req/s) per model, protocol,
    rows and connections."""
    found: dict[tuple, dict] = {}
    for point in points:
        key = (point["model"], point["kind"], point["protocol"], point["rows"], point["connections"])
        if key not in found or point["rps"]["median"] > found[key]["rps"]["median"]:
            found[key] = point
    return found


def comparisons(document: dict) -> list[tuple[dict, dict]]:
    """(ferry's best, the peer's best) for every point where both ran, in the order measured."""
    winners = best(summarize(document["runs"]))
    pairs = []
    for (model, kind, protocol, rows, connections), ferry in winners.items():
        peer = winners.get((model, PEERS[protocol], protocol, rows, connections))
        if kind == "ferry" and peer:
            pairs.append((ferry, peer))
    return pairs


def _figure(point: dict) -> str:
    """Median req/s and p99, with min–max when there was more than one round."""
    rps, p99 = point["rps"], point["p99_ms"]
    if point["rounds"] == 1:
        return f"{rps['median']:,.0f} req/s, p99 {p99['median']:,.0f} ms"
    return (f"{rps['median']:,.0f} req/s ({rps['min']:,.0f}–{rps['max']:,.0f}), "
            f"p99 {p99['median']:,.0f} ms ({p99['min']:,.0f}–{p99['max']:,.0f})")


def _low_high(values: dict) -> str:
    return f"{values['median']:.1f} ({values['min']:.1f}-{values['max']:.1f})"


def table_lines(document: dict) -> list[str]:
    """The printed table: every configuration per point, then ferry's best against each peer's."""
    lines = [f"{'model':7} {'protocol':11} {'rows':>4} {'conns':>5} {'server':9} {'config':26} "
             f"{'req/s median (min-max)':>26} {'p99 ms median (min-max)':>26}"]
    for point in summarize(document["runs"]):
        rps, p99 = point["rps"], point["p99_ms"]
        lines.append(f"{point['model']:7} {point['protocol']:11} {point['rows']:>4} "
                     f"{point['connections']:>5} {point['kind']:9} {point['config']:26} "
                     f"{_low_high(rps):>26} {_low_high(p99):>26}")
    for ferry, peer in comparisons(document):
        lines.append(f"best model={ferry['model']} protocol={ferry['protocol']} rows={ferry['rows']} "
                     f"conns={ferry['connections']}: ferry ({ferry['config']}) / {peer['kind']} "
                     f"({peer['config']}) = x{ferry['rps']['median'] / peer['rps']['median']:.1f} "
                     f"req/s, p99 {ferry['p99_ms']['median']:.0f} vs {peer['p99_ms']['median']:.0f} ms")
    for server in document["servers"]:
        lines.append(f"memory model={server['model']} server={server['kind']} config={server['config']!r} "
                     f"startup_s={server['startup_s']:.1f} rss_idle_mib={server['rss_idle_mib']:.0f} "
                     f"rss_after_load_mib={server['rss_loaded_mib']:.0f} "
                     f"uss_after_load_mib={server['uss_loaded_mib']:.0f}")
    return lines


def render(document: dict) -> str:
    """README's serving section: ferry's best configuration against each peer's best, per point,
    then start-up and memory of every configuration."""
    settings = document["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in settings["versions"].items())
    rounds = settings["rounds"]
    runs = (f"the median of {rounds} interleaved rounds (min–max in brackets)" if rounds > 1
            else "one round")
    lines = [
        f"`make bench` (`tests/bench/test_bench_serving.py`): {runs} × {settings['seconds']} s per "
        f"point, wrk with one thread on the same {settings['cpus']} CPUs (1-minute load average "
        f"{settings['load_average']:.1f} at the start; {versions}). Each server's best configuration "
        "per point, named after its figure. Rendered by `tests/bench/report.py` from the run's JSON.",
        "",
        "| model | body, connections | protocol | ferry serve | peer | ferry ÷ peer req/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for ferry, peer in comparisons(document):
        rows = "1 row" if ferry["rows"] == 1 else f"{ferry['rows']} rows"
        lines.append(
            f"| {ferry['model']} | {rows}, {ferry['connections']} | {PROTOCOLS[ferry['protocol']]} | "
            f"{_figure(ferry)}; `{ferry['config']}` | {NAMES[peer['kind']]}: {_figure(peer)}; "
            f"`{peer['config']}` | ×{ferry['rps']['median'] / peer['rps']['median']:.1f} |")
    models = list(dict.fromkeys(server["model"] for server in document["servers"]))
    by_config: dict[tuple, dict[str, dict]] = {}
    for server in document["servers"]:
        by_config.setdefault((server["kind"], server["config"]), {})[server["model"]] = server
    joined = " / ".join(models)
    lines += ["", "Memory: USS counts the pages private to one process, so a pool that forks after "
              "loading the model (`ferry serve --workers`) shares most of it between its workers.",
              "", f"| server, configuration | start-up to ready, {joined} | RSS of the process tree "
              f"after the load, {joined} | private (USS), {joined} |", "| --- | --- | --- | --- |"]
    for (kind, config), found in by_config.items():
        cells = [" / ".join(f"{found[model][key]:{form}}" if model in found else "–" for model in models)
                 for key, form in (("startup_s", ".1f"), ("rss_loaded_mib", ".0f"),
                                   ("uss_loaded_mib", ".0f"))]
        lines.append(f"| {NAMES[kind]} `{config}` | {cells[0]} s | {cells[1]} MiB | {cells[2]} MiB |")
    return "\n".join(lines)


def update_readme(text: str, document: dict) -> str:
    """``text`` with the part between the markers replaced by ``render(document)``."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README lacks the {BEGIN} … {END} markers")
    return f"{head}{BEGIN}\n{render(document)}\n{END}{tail}"


def main(argv: list[str]) -> None:
    results = Path(argv[0])
    readme = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / "README.md"
    readme.write_text(update_readme(readme.read_text(), json.loads(results.read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
