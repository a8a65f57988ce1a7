"""What ``ferry get`` prints: a Ferry object and its children as text (pure; no I/O).

Objects come in as the apiserver stores them (camelCase dicts); each kind's status is read through
its status model, so only fields the operator really writes are shown. Symbols and colour are on
only for a terminal: piped output stays plain ASCII for grep and scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.api import KINDS
from ferry.builders.inferenceservice import MODEL_VERSION_LABEL, ROLE_LABEL

GOOD = {"Healthy", "Ready", "Succeeded", "Approved", "Serving", "Running", "Passed", "Complete",
        "NoDrift", "True"}
BAD = {"Degraded", "Failed", "Rejected", "Invalid", "Stale", "Drifted", "False", "Error",
       "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "OOMKilled"}
# Roles the builder gives a Deployment (ferry.builders.inferenceservice), serving ones first.
ROLE_ORDER = ("stable", "canary", "preview", "shadow", "previous", "rolledBack")
# Conditions whose False is the normal state, or that repeat the phase line.
QUIET = {"Progressing"}


@dataclass(frozen=True)
class Style:
    """Terminal output gets symbols, colour and box-drawing branches; anything else ASCII."""

    tty: bool = False

    def branch(self, last: bool) -> str:
        if self.tty:
            return "└── " if last else "├── "
        return "`-- " if last else "|-- "

    def indent(self, last: bool) -> str:
        return "    " if last else ("│   " if self.tty else "|   ")

    def state(self, word: str | None) -> str:
        word = word or "Unknown"
        if not self.tty:
            return word
        if word in GOOD:
            return f"\x1b[32m✔ {word}\x1b[0m"
        if word in BAD:
            return f"\x1b[31m✖ {word}\x1b[0m"
        return f"\x1b[33m◌ {word}\x1b[0m"


@dataclass(frozen=True)
class Node:
    """One line of the tree and the nodes below it."""

    text: str
    children: tuple[Node, ...] = ()


def tree(node: Node, style: Style, prefix: str = "", last: bool = True, root: bool = True) -> list[str]:
    lines = [node.text if root else prefix + style.branch(last) + node.text]
    below = prefix if root else prefix + style.indent(last)
    for i, child in enumerate(node.children):
        lines += tree(child, style, below, i == len(node.children) - 1, root=False)
    return lines


def _header(obj: dict, style: Style, rows: list[tuple[str, str | None]]) -> list[str]:
    meta = obj.get("metadata") or {}
    rows = [("Name", meta.get("name")), ("Namespace", meta.get("namespace")),
            ("Phase", style.state((obj.get("status") or {}).get("phase") or "Pending")), *rows]
    width = max(len(key) for key, value in rows if value) + 2
    return [f"{key + ':':<{width}}{value}" for key, value in rows if value]


def _conditions(conditions, style: Style) -> list[str]:
    """Conditions that are not True (and not ``QUIET``): what is wrong or still missing."""
    shown = [c for c in conditions if c.status != "True" and c.type not in QUIET]
    if not shown:
        return []
    return ["", "Conditions (not True):"] + [
        f"  {c.type}={style.state(c.status)} {c.reason}" + (f": {c.message}" if c.message else "")
        for c in shown]


def _section(title: str, nodes: list[Node], style: Style) -> list[str]:
    if not nodes:
        return []
    return ["", *tree(Node(title, tuple(nodes)), style)]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _pairs(values: dict, limit: int = 8) -> str:
    items = sorted(values.items())
    text = ", ".join(f"{k}={_number(v) if isinstance(v, float) else v}" for k, v in items[:limit])
    return text + (f", ... {len(items) - limit} more" if len(items) > limit else "")


# --- Kubernetes children -------------------------------------------------------------------------


def pod_state(pod: dict) -> str:
    """The state word ``kubectl get pods`` would print: a waiting/terminated reason beats the phase."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            if (reason := (state.get(key) or {}).get("reason")) and reason != "Completed":
                return reason
    return status.get("phase") or "Pending"


def pod_node(pod: dict, style: Style) -> Node:
    containers = (pod.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for c in containers if c.get("ready"))
    restarts = sum(c.get("restartCount") or 0 for c in containers)
    total = len(containers) or len((pod.get("spec") or {}).get("containers") or [])
    return Node(f"Pod {pod['metadata']['name']}  {style.state(pod_state(pod))}  "
                f"ready {ready}/{total}" + (f", restarts {restarts}" if restarts else ""))


def _selects(selector: dict, pod: dict) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def job_state(job: dict) -> str:
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed",
                                                                           "Suspended"):
            return condition["type"]
    return "Running" if status.get("active") else "Pending"


def job_node(job: dict, style: Style) -> Node:
    status = job.get("status") or {}
    counts = ", ".join(f"{key} {status[key]}" for key in ("active", "succeeded", "failed")
                       if status.get(key))
    return Node(f"Job {job['metadata']['name']}  {style.state(job_state(job))}"
                + (f"  {counts}" if counts else ""))


def _by_creation(objects: list[dict]) -> list[dict]:
    return sorted(objects, key=lambda o: (o["metadata"].get("creationTimestamp") or "",
                                          o["metadata"]["name"]))


# --- InferenceService ----------------------------------------------------------------------------


def _served(model) -> str | None:
    if model is None:
        return None
    mlflow = f"  ({model.model_name} v{model.mlflow_version})" if model.mlflow_version else ""
    return model.model_version + mlflow


def _strategy(spec: dict, status) -> str | None:
    strategy = spec.get("strategy") or {}
    kind = next((k for k in ("canary", "blueGreen", "shadow") if k in strategy), None)
    if kind is None:
        return None
    text = {"canary": "Canary", "blueGreen": "BlueGreen", "shadow": "Shadow"}[kind]
    if status.canary_version is None:
        return text
    if status.current_step is not None and kind == "canary":
        text += f"  step {status.current_step + 1}/{len(strategy['canary'].get('steps') or [])}"
    if status.canary_weight is not None:
        text += f"  weight {status.canary_weight}%"
    if status.rollout and status.rollout.promoting:
        text += "  promoting"
    if (spec.get("rollout") or {}).get("paused"):
        text += "  paused (spec.rollout.paused)"
    return text


def deployment_node(deployment: dict, pods: list[dict], style: Style) -> Node:
    meta = deployment["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    desired = (deployment.get("spec") or {}).get("replicas", 1)
    ready = (deployment.get("status") or {}).get("readyReplicas") or 0
    mlflow = annotations.get("ferry.dev/mlflow-version")
    text = (f"Deployment {meta['name']}  {labels.get(ROLE_LABEL, '?')}  "
            f"{labels.get(MODEL_VERSION_LABEL, '?')}" + (f" (v{mlflow})" if mlflow else "")
            + f"  ready {ready}/{desired}")
    selector = (deployment.get("spec") or {}).get("selector") or {}
    return Node(text, tuple(pod_node(p, style) for p in _by_creation(pods) if _selects(selector, p)))


def _analysis(status, style: Style) -> list[Node]:
    """The newest measurement of each check, as the operator last recorded them."""
    newest: dict[str, object] = {}
    for result in status.analysis:
        newest[result.name] = result
    return [Node(f"{r.name}  {style.state(r.verdict)}  {_number(r.value)}"
                 + (f" (pass: {r.op} {_number(r.threshold)})" if r.op else "")
                 + (f"  {r.version}" if r.version else "") + (f"  {r.time}" if r.time else "")
                 + (f"  {r.message}" if r.message else ""))
            for r in newest.values()]


def _drift(status, style: Style) -> list[Node]:
    drift, retrain = status.drift, status.retrain
    nodes = []
    if drift is not None:
        text = f"Drift  {style.state(drift.verdict)}"
        if drift.drift_share is not None:
            text += f"  share {_number(drift.drift_share)}"
        if drift.features_checked is not None:
            text += f" of {drift.features_checked} features"
        if drift.rows is not None:
            text += f"  rows {drift.rows}"
        text += "".join(f"  {part}" for part in (
            drift.window and f"window {drift.window}", drift.time) if part)
        details = [Node(f"drifted: {_pairs(drift.drifted_features)}")] if drift.drifted_features else []
        details += [Node(f"{label}: {value}") for label, value in (
            ("report", drift.html_report_uri or drift.report_uri), ("message", drift.message))
            if value]
        nodes.append(Node(text, tuple(details)))
    if retrain is not None and (retrain.decision or retrain.count):
        text = f"Retraining  {retrain.decision or '-'}  runs {retrain.count}"
        if retrain.last_run:
            text += f"  last {retrain.last_run}"
        if retrain.last_trigger_time:
            text += f" at {retrain.last_trigger_time}"
        nodes.append(Node(text, (Node(retrain.message),) if retrain.message else ()))
    return nodes


def render_inferenceservice(obj: dict, deployments: list[dict], pods: list[dict],
                            style: Style = Style()) -> list[str]:
    """``deployments``/``pods``: the service's children (label ``ferry.dev/inferenceservice``)."""
    status = KINDS["InferenceService"].status_model.model_validate(obj.get("status") or {})
    spec = obj.get("spec") or {}
    rollout = status.rollout
    stable = _served(rollout.stable if rollout else None) or status.stable_version
    candidate = _served(rollout.candidate if rollout else None) or status.canary_version
    rolled_back = rollout.rolled_back if rollout else None
    lines = _header(obj, style, [
        ("Message", status.message),
        ("Strategy", _strategy(spec, status)),
        ("Stable", stable),
        ("Candidate", candidate),
        ("Rolled back", rolled_back and f"{rolled_back.model_version}  {rolled_back.reason}"
         + (f": {rolled_back.message}" if rolled_back.message else "")),
        ("URL", status.url),
        ("Replicas", None if status.replicas is None else f"{status.replicas} ready"),
    ])
    lines += _section("Analysis:", _analysis(status, style), style)
    lines += _section("Monitoring:", _drift(status, style), style)
    lines += _conditions(status.conditions, style)
    order = {role: i for i, role in enumerate(ROLE_ORDER)}
    ordered = sorted(deployments, key=lambda d: (
        order.get((d["metadata"].get("labels") or {}).get(ROLE_LABEL), len(order)),
        d["metadata"]["name"]))
    root = Node(f"InferenceService {obj['metadata']['name']}  {style.state(status.phase)}",
                tuple(deployment_node(d, pods, style) for d in ordered))
    return lines + [""] + tree(root, style)


# --- ModelVersion --------------------------------------------------------------------------------


def _approval(spec: dict, status) -> str:
    required = (spec.get("approval") or {}).get("required", False)
    record = status.approval
    if record is not None:
        return f"approved by {record.by} at {record.at}" + (
            f": {record.comment}" if record.comment else "")
    return "required, not yet approved" if required else "not required"


def _phase_of(obj: dict | None, style: Style) -> str:
    if obj is None:
        return "  (not found)"
    return f"  {style.state((obj.get('status') or {}).get('phase') or 'Pending')}"


def _lineage(spec: dict, status, training_run: dict | None, pipeline: dict | None,
             style: Style) -> Node | None:
    """ModelVersion → TrainingRun → FeaturePipeline, as recorded in ``status.lineage``."""
    lineage = status.lineage
    run_name = (lineage and lineage.training_run) or spec.get("trainingRunRef")
    fp_name = (lineage and lineage.feature_pipeline) or spec.get("features")
    features = None
    if fp_name:
        version = (lineage and lineage.feature_version) or \
            ((pipeline or {}).get("spec") or {}).get("version")
        details = [Node(f"data: {lineage.data_uri}")] if lineage and lineage.data_uri else []
        features = Node(f"FeaturePipeline {fp_name}" + (f" {version}" if version else "")
                        + _phase_of(pipeline, style), tuple(details))
    if not run_name:
        return Node("Lineage:", (features,)) if features else None
    details = [Node(f"{label}: {value}") for label, value in (
        ("MLflow run", lineage and lineage.run_id), ("experiment", lineage and lineage.experiment),
        ("image", lineage and lineage.image),
        ("parameters", lineage and lineage.parameters and _pairs(lineage.parameters)),
        ("metrics", lineage and lineage.metrics and _pairs(lineage.metrics))) if value]
    run = Node(f"TrainingRun {run_name}" + _phase_of(training_run, style),
               tuple(details + ([features] if features else [])))
    return Node("Lineage:", (run,))


def render_modelversion(obj: dict, training_run: dict | None = None, pipeline: dict | None = None,
                        style: Style = Style()) -> list[str]:
    """``training_run``/``pipeline``: the lineage's objects where they still exist."""
    status = KINDS["ModelVersion"].status_model.model_validate(obj.get("status") or {})
    spec = obj.get("spec") or {}
    mlflow = spec.get("modelName", "?") + (f" version {status.mlflow_version}"
                                           if status.mlflow_version else " (not registered)")
    lines = _header(obj, style, [
        ("MLflow", mlflow), ("Source", status.source or spec.get("source")),
        ("Approval", _approval(spec, status)),
        ("Served by", ", ".join(status.served_by) or None)])
    gates = [Node(f"{g.name}  {style.state(g.verdict)}"
                  + (f"  observed {g.observed}" if g.observed is not None else "")
                  + (f"  threshold {g.threshold}" if g.threshold is not None else "")
                  + (f"  {g.message}" if g.message else "")) for g in status.gates]
    lines += _section("Gates:", gates, style)
    lineage = _lineage(spec, status, training_run, pipeline, style)
    lines += ["", *tree(lineage, style)] if lineage else []
    return lines + _conditions(status.conditions, style)


# --- TrainingRun and FeaturePipeline -------------------------------------------------------------


def render_trainingrun(obj: dict, jobs: list[dict], style: Style = Style()) -> list[str]:
    """``jobs``: the run's Jobs (one per attempt); a sweep's trials are its child TrainingRuns."""
    status = KINDS["TrainingRun"].status_model.model_validate(obj.get("status") or {})
    progress = status.progress
    progress_text = progress and ", ".join(part for part in (
        progress.step is not None and f"step {progress.step}",
        progress.epoch is not None and f"epoch {progress.epoch}",
        progress.metrics and _pairs(progress.metrics)) if part)
    best = status.best_trial and f"{status.best_trial} ({_number(status.best_objective)})"
    lines = _header(obj, style, [
        ("Message", status.message),
        ("Progress", progress_text or None),
        ("MLflow run", status.mlflow_run_id and status.mlflow_run_id
         + (f"  (experiment {status.experiment_id})" if status.experiment_id else "")),
        ("Features", status.features_uri),
        ("Restarts", None if not status.restarts else str(status.restarts)),
        ("Best trial", best),
        ("Metrics", status.metrics and _pairs(status.metrics) or None),
        ("Registered", status.model_version and f"mv/{status.model_version}"),
    ])
    lines += _conditions(status.conditions, style)
    children = [job_node(j, style) for j in _by_creation(jobs)]
    children += [Node(f"TrainingRun {t.name}  {style.state(t.phase)}"
                      + (f"  objective {_number(t.objective)}" if t.objective is not None else "")
                      + (f"  {_pairs(t.parameters)}" if t.parameters else ""))
                 for t in status.trials]
    root = Node(f"TrainingRun {obj['metadata']['name']}  {style.state(status.phase)}",
                tuple(children))
    return lines + [""] + tree(root, style)


def render_featurepipeline(obj: dict, jobs: list[dict], style: Style = Style()) -> list[str]:
    status = KINDS["FeaturePipeline"].status_model.model_validate(obj.get("status") or {})
    spec = obj.get("spec") or {}

    def run(record) -> str | None:
        return record and " ".join(part for part in (
            record.state, record.time, record.rows is not None and f"rows {record.rows}",
            record.output_uri) if part)

    backfill = status.backfill
    failed = [e for e in status.expectation_results if not e.passed]
    lines = _header(obj, style, [
        ("Feature set", f"{spec.get('featureSet', '?')} {spec.get('version', '')}".strip()),
        ("Schedule", spec.get("schedule") or "once"),
        ("Last run", run(status.last_run)),
        ("Last success", run(status.last_successful_run)),
        ("Output", status.latest_output_uri),
        ("Backfill", backfill and f"{backfill.succeeded}/{backfill.total} succeeded, "
         f"{backfill.running} running, {backfill.failed} failed"),
        ("Used by", ", ".join(status.used_by) or None),
    ])
    lines += _section("Failed expectations:", [
        Node(f"{e.expectation}" + (f"  observed {e.observed}" if e.observed else "")) for e in failed],
        style)
    lines += _conditions(status.conditions, style)
    root = Node(f"FeaturePipeline {obj['metadata']['name']}  {style.state(status.phase)}",
                tuple(job_node(j, style) for j in _by_creation(jobs)))
    return lines + [""] + tree(root, style)

