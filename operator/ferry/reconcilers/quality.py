"""Quality verdicts (pure): a joined summary (``quality.summary``) judged against
``spec.monitoring.quality`` becomes ``status.quality``, and ``status.quality`` becomes the
``QualityHealthy`` condition.

Per version and per slice of a version:

- at least ``minLabels`` labelled rows: every metric is realized (over the labelled rows); one
  outside its threshold range makes the group Degraded, else it is Healthy. An undefined metric
  (e.g. ROC AUC with one class among the labels) breaches nothing: its message says why;
- fewer: Inconclusive, whatever the values. Metrics the CBPE estimate covers are then reported
  as the estimate over the rows still waiting for labels (``estimated: true``) where there are
  such rows; the estimate never makes a group Degraded (it assumes no concept drift, which is
  what labels are there to catch). The rest stay realized over the few labels there are.

The service is Degraded when any version or slice is, Healthy when none is and at least one is
Healthy, else Inconclusive (also when the window holds no predictions).
"""

from __future__ import annotations

from ferry.api.inferenceservice import OUTCOME, QualityMonitor

HEALTHY, DEGRADED, INCONCLUSIVE = "Healthy", "Degraded", "Inconclusive"
CONDITION = "QualityHealthy"
MESSAGE_LIMIT = 1024
NOT_COMPUTED = "not computed: the prediction log has no class probabilities for it, or the task " \
               "has no such metric"


def breach(name: str, value: float | None, monitor: QualityMonitor) -> str | None:
    """``"accuracy 0.61 < min 0.8"`` when ``value`` leaves the metric's range, else None."""
    threshold = monitor.thresholds.get(name)
    if threshold is None or value is None:
        return None
    if threshold.min is not None and value < threshold.min:
        return f"{name} {value:.4g} < min {threshold.min:.4g}"
    if threshold.max is not None and value > threshold.max:
        return f"{name} {value:.4g} > max {threshold.max:.4g}"
    return None


def judge_group(part: dict, monitor: QualityMonitor, task: str) -> tuple[dict, list[str]]:
    """One version's or slice's status entry (``QualityGroup``) and its breaches."""
    coverage = part["coverage"]
    enough = coverage["labelled"] >= monitor.min_labels
    estimate = part.get("estimated") if not enough else None
    if estimate is not None and not estimate["rows"]:
        estimate = None
    values, breaches = [], []

    def report(name: str, value: float | None, estimated: bool, message: str | None) -> None:
        broken = breach(name, value, monitor) if enough else None
        if broken:
            breaches.append(broken)
        values.append({"name": name, "value": value, "estimated": estimated,
                       "message": broken or message})

    realized = part["realized"]
    for name in monitor.reported_metrics(task):
        source = estimate if estimate is not None and name in estimate["metrics"] else realized
        if name in source["metrics"]:
            report(name, source["metrics"][name], source is estimate, source["undefined"].get(name))
        else:
            report(name, None, False, NOT_COMPUTED)
    if monitor.outcome is not None:
        mean = part["business"]["mean"]
        report(OUTCOME, mean, False, None if mean is not None else "no labelled rows with an outcome")
    verdict = INCONCLUSIVE if not enough else DEGRADED if breaches else HEALTHY
    return {"verdict": verdict, "coverage": {"labelled": coverage["labelled"],
                                             "predicted": coverage["total"],
                                             "ratio": coverage["ratio"]},
            "metrics": values}, breaches


def judge(summary: dict, monitor: QualityMonitor) -> dict:
    """``status.quality``'s verdicts and values (``QualitySummary`` without the run's identity)."""
    task = summary["task"]
    versions, degraded, verdicts, short = [], [], [], []
    for version in summary["versions"]:
        entry, breaches = judge_group(version, monitor, task)
        degraded += [f"{version['version']}: {b}" for b in breaches]
        verdicts.append(entry["verdict"])
        if entry["verdict"] == INCONCLUSIVE:
            short.append(f"{version['version']} has {entry['coverage']['labelled']}")
        slices = []
        for part in version["slices"]:
            judged, breaches = judge_group(part, monitor, task)
            degraded += [f"{version['version']}/{part['name']}: {b}" for b in breaches]
            verdicts.append(judged["verdict"])
            slices.append({"name": part["name"], **judged})
        versions.append({"version": version["version"], **entry, "slices": slices,
                         "slicesOmitted": version.get("slicesOmitted", 0)})
    if degraded:
        verdict, message = DEGRADED, "; ".join(degraded)
    elif HEALTHY in verdicts:
        verdict = HEALTHY
        message = f"{verdicts.count(HEALTHY)} of {len(verdicts)} version(s)/slice(s) within " \
                  "their thresholds"
    elif not versions:
        verdict, message = INCONCLUSIVE, "no predictions in the window"
    else:
        verdict = INCONCLUSIVE
        message = f"fewer than minLabels ({monitor.min_labels}) labelled rows: {', '.join(short)}"
    return {"task": task, "verdict": verdict, "message": message[:MESSAGE_LIMIT],
            "versions": versions}


def health(quality: dict | None) -> tuple[str, str, str]:
    """The ``QualityHealthy`` condition's (status, reason, message) for ``status.quality``."""
    if not quality or not quality.get("verdict"):
        return "Unknown", "AwaitingFirstRun", "the quality monitor has not reported yet"
    status = {HEALTHY: "True", DEGRADED: "False"}.get(quality["verdict"], "Unknown")
    run = f" (run {quality['runId']})" if quality.get("runId") else ""
    return status, quality["verdict"], f"{quality.get('message') or ''}{run}"


def samples(quality: dict | None) -> list[tuple[tuple[str, str, str, str], float]]:
    """``(version, slice, metric, estimated)`` → value for every defined metric of
    ``status.quality`` (slice ``""``: the whole version), as the Prometheus gauge exports them."""
    found = []
    for version in (quality or {}).get("versions") or []:
        groups = [("", version)] + [(s["name"], s) for s in version.get("slices") or []]
        for slice_name, group in groups:
            for metric in group.get("metrics") or []:
                if metric.get("value") is not None:
                    found.append(((version["version"], slice_name, metric["name"],
                                   "true" if metric.get("estimated") else "false"),
                                  float(metric["value"])))
    return found
