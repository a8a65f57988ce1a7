"""The MLflow Model Registry and tracking server, as the ModelVersion controller needs them.

Every registry version Ferry creates carries the tag ``ferry.dev/uid`` = the ModelVersion's uid,
so after any restart the operator finds its own version again instead of creating a duplicate.
Calls are synchronous (the MLflow client); controllers run them in the "mlflow" pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UID_TAG = "ferry.dev/uid"
CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryUnavailable(Exception):
    """MLflow could not be reached or answered with a server error."""


class RegistryRejected(Exception):
    """MLflow refused the request (e.g. the source run does not exist); retrying won't help."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunFacts:
    run_id: str
    experiment_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class VersionFacts:
    version: str
    source: str
    run_id: str | None
    tags: dict[str, str]


class Registry:
    def __init__(self, tracking_uri: str) -> None:
        import os

        # Fail fast: the controller retries with its own backoff and reports RegistryReachable,
        # instead of the client blocking a worker for minutes in urllib3 retries.
        for variable, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
                                ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                                ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
            os.environ.setdefault(variable, value)
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(tracking_uri)  # model-info lookups use the global URI
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, fn, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as error:
            first_line = str(error).splitlines()[0]
            if error.get_http_status_code() >= 500 or "Max retries" in str(error) \
                    or "Connection" in str(error):
                raise RegistryUnavailable(first_line) from error
            raise RegistryRejected(first_line, str(error.error_code)) from error
        except OSError as error:
            raise RegistryUnavailable(str(error)) from error

    @staticmethod
    def _facts(version) -> VersionFacts:
        return VersionFacts(str(version.version), version.source, version.run_id,
                            dict(version.tags or {}))

    def find_by_uid(self, model: str, uid: str) -> VersionFacts | None:
        found = self._call(self.client.search_model_versions,
                           f"name = '{model}' and tags.`{UID_TAG}` = '{uid}'")
        return self._facts(found[0]) if found else None

    def register(self, model: str, uid: str, source: str, run_id: str | None,
                 description: str | None, tags: dict[str, str]) -> VersionFacts:
        """Create the registered model if missing and the version once (idempotent by uid)."""
        existing = self.find_by_uid(model, uid)
        if existing is not None:
            return existing
        try:
            self._call(self.client.create_registered_model, model)
        except RegistryRejected as error:
            if "RESOURCE_ALREADY_EXISTS" not in error.code:
                raise
        source, model_id = self.logged_model_source(source, run_id)
        version = self._call(self.client.create_model_version, model, source, run_id,
                             tags={**tags, UID_TAG: uid}, description=description,
                             model_id=model_id)
        return self._facts(version)

    def logged_model_source(self, source: str, run_id: str | None) -> tuple[str, str | None]:
        """(source, model id) to register. MLflow 3 keeps a model logged with ``name=`` as a
        LoggedModel, not under the run's artifacts: ``runs:/<run>/<name>`` then resolves to
        ``models:/<model id>``, as ``mlflow.register_model`` does; otherwise the version would
        point at an empty folder and could not be served."""
        if source.startswith("models:/m-"):
            return source, source.removeprefix("models:/").split("/")[0]
        if not source.startswith("runs:/") or not run_id:
            return source, None
        path = source.removeprefix(f"runs:/{run_id}/").strip("/")
        experiment = self._call(self.client.get_run, run_id).info.experiment_id
        logged = self._call(self.client.search_logged_models, [experiment],
                            f"source_run_id = '{run_id}' AND name = '{path}'")
        if not logged:
            return source, None
        return f"models:/{logged[0].model_id}", logged[0].model_id

    def set_tags(self, model: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._call(self.client.set_model_version_tag, model, version, key, value)

    def run(self, run_id: str) -> RunFacts:
        run = self._call(self.client.get_run, run_id)
        return RunFacts(run_id, run.info.experiment_id, dict(run.data.metrics),
                        dict(run.data.params), dict(run.data.tags))

    def version_by_alias(self, model: str, alias: str) -> VersionFacts | None:
        try:
            return self._facts(self._call(self.client.get_model_version_by_alias, model, alias))
        except RegistryRejected:
            return None

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self._call(self.client.set_registered_model_alias, model, alias, version)

    def remove_alias(self, model: str, alias: str) -> None:
        self._call(self.client.delete_registered_model_alias, model, alias)

    def delete_version(self, model: str, version: str) -> None:
        self._call(self.client.delete_model_version, model, version)

    def input_columns(self, source: str) -> list[str] | None:
        """Input column names of the model's signature; None when it has no signature."""
        from mlflow.models import get_model_info

        info = self._call(get_model_info, source)
        if info.signature is None or info.signature.inputs is None:
            return None
        return [name for name in info.signature.inputs.input_names() if name]


class Tracker(Registry):
    """Runs of the tracking server, created by the operator so the pod logs into a known run."""

    def ensure_experiment(self, name: str) -> str:
        """The experiment's id, created when missing. Two runs of one namespace may both find it
        missing and both create it: the loser's RESOURCE_ALREADY_EXISTS means "read it again"."""
        found = self._call(self.client.get_experiment_by_name, name)
        if found:
            return found.experiment_id
        try:
            return self._call(self.client.create_experiment, name)
        except RegistryRejected as error:
            if "RESOURCE_ALREADY_EXISTS" not in error.code:
                raise
        return self._call(self.client.get_experiment_by_name, name).experiment_id

    def ensure_run(self, experiment: str, uid: str, tags: dict[str, str]) -> tuple[str, str]:
        """(run id, experiment id) of the run tagged with ``uid``; created once."""
        experiment_id = self.ensure_experiment(experiment)
        runs = self._call(self.client.search_runs, [experiment_id],
                          f"tags.`{UID_TAG}` = '{uid}'", max_results=1)
        if runs:
            return runs[0].info.run_id, experiment_id
        run = self._call(self.client.create_run, experiment_id, tags={**tags, UID_TAG: uid})
        return run.info.run_id, experiment_id

    def end_run(self, run_id: str, status: str) -> None:
        """Mark the run FINISHED/FAILED/KILLED unless it already ended."""
        run = self._call(self.client.get_run, run_id)
        if run.info.status in ("RUNNING", "SCHEDULED"):
            self._call(self.client.set_terminated, run_id, status)
