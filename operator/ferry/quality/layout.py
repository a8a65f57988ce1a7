"""Where labels and quality reports live; no heavy imports, so ``ferry serve`` can use it without
loading pyarrow."""


def labels_uri(prediction_log_uri: str) -> str:
    """Where an InferenceService's labels live, given where its prediction log is written: next to
    the log's ``dt=`` partitions, under the same InferenceService prefix."""
    return f"{prediction_log_uri.rstrip('/')}/labels/"


def reports_uri(prediction_log_uri: str) -> str:
    """Where the quality monitor writes its reports (one folder per run), beside the labels."""
    return f"{prediction_log_uri.rstrip('/')}/quality-reports"
