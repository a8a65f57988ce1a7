"""``ferry serve``: Ferry's model server for MLflow pyfunc models.

It speaks MLflow's ``/invocations`` and the Open Inference Protocol v2, coalesces concurrent requests
into one ``predict`` call (exact: each request gets the rows of its own input), samples predictions
to S3 as Parquet for drift monitoring, gives every predicted row an id that labels sent to
``/v2/models/{name}/feedback`` join on, can mirror a share of traffic to a candidate model, and
exports Prometheus metrics the rollout analysis reads. Pure parts (configuration, payload parsing,
batching, log layout) live in their own modules; ``server`` is the imperative shell.
"""
