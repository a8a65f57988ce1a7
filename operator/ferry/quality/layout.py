"""Where labels live; no heavy imports, so ``ferry serve`` can use it without loading pyarrow."""


def labels_uri(prediction_log_uri: str) -> str:
    """Where an InferenceService's labels live, given where its prediction log is written: next to
    the log's ``dt=`` partitions, under the same InferenceService prefix."""
    return f"{prediction_log_uri.rstrip('/')}/labels/"
