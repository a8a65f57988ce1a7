"""Labels sent to ``POST /v2/models/{name}/feedback``: checked, then stored next to the prediction log.

Body: ``{"labels": [{"id": "...", "label": ..., "time": "2026-11-22T10:00:00Z"}, ...]}``, 1 to
``MAX_LABELS`` items. ``id`` is a prediction id (a non-empty string or an integer); ``label`` a
number, string or boolean, one kind per request (integers and floats mix as floats); ``time``
(optional) an RFC 3339 time with a zone, when the outcome became known; without it, the time the
server received the request. Any other field, a wrong type or a bad time is a 400 naming the item
and field, and nothing of that request is stored.

Why one object per request and no buffer: ``{"accepted": n}`` then means stored, so a client
that gets an error retries and a crash loses nothing acknowledged; labels come in far fewer and
bigger requests than predictions, so the objects stay few. An object is never rewritten: its key
(``predlog.object_key`` under ``quality.layout.labels_uri``) carries the hostname, the time and a
sequence number.
"""

from __future__ import annotations

import io
import itertools
from datetime import datetime

import orjson

from ferry.quality.layout import labels_uri
from ferry.serving.predlog import object_key

MAX_LABELS = 10_000
FIELDS = ("id", "label", "time")


class FeedbackError(ValueError):
    """The feedback body cannot be stored; the message names the item and field (HTTP 400)."""


def parse_feedback(body: bytes, received_ms: int):
    """A feedback body → an Arrow table of id (string), label, time (ms, UTC)."""
    import pyarrow as pa

    try:
        document = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError as error:
        raise FeedbackError(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or "labels" not in document:
        raise FeedbackError('the body must be a JSON object {"labels": [{"id": ..., "label": ...}, ...]}')
    extra = sorted(set(document) - {"labels"})
    if extra:
        raise FeedbackError(f"unknown field {extra[0]!r}: the body has only 'labels'")
    items = document["labels"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_LABELS:
        raise FeedbackError(f"labels must be a list of 1 to {MAX_LABELS} objects")
    ids, labels, times = [], [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise FeedbackError(f"labels[{index}] must be an object with id, label and optionally time")
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            raise FeedbackError(f"labels[{index}]: unknown field {unknown[0]!r} (fields: "
                                f"{', '.join(FIELDS)})")
        for field in ("id", "label"):
            if field not in item:
                raise FeedbackError(f"labels[{index}].{field} is missing")
        ids.append(_id(item["id"], index))
        labels.append(_label(item["label"], index))
        times.append(_time(item["time"], index) if "time" in item else received_ms)
    kinds = {_kind(label) for label in labels}
    if len(kinds) > 1:
        first = next(index for index, label in enumerate(labels) if _kind(label) != _kind(labels[0]))
        raise FeedbackError(f"labels[{first}].label is a {_kind(labels[first])} but labels[0].label "
                            f"is a {_kind(labels[0])}: one kind of label per request")
    try:
        values = pa.array(labels)
    except (pa.ArrowInvalid, OverflowError) as error:
        raise FeedbackError(f"the labels do not fit one column type: {error}") from None
    return pa.table({"id": pa.array(ids, pa.string()), "label": values,
                     "time": pa.array(times, pa.timestamp("ms", tz="UTC"))})


def _id(value, index: int) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FeedbackError(f"labels[{index}].id must be a non-empty string or an integer, got {value!r}")


def _label(value, index: int):
    if isinstance(value, str | bool | int | float):
        return value
    raise FeedbackError(f"labels[{index}].label must be a number, string or boolean, got {value!r}")


def _kind(label) -> str:
    if isinstance(label, bool):
        return "boolean"
    return "string" if isinstance(label, str) else "number"


def _time(value, index: int) -> int:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return int(moment.timestamp() * 1000)
    raise FeedbackError(f"labels[{index}].time must be an RFC 3339 time with a zone "
                        f"(2026-11-22T10:00:00Z), got {value!r}")


class LabelWriter:
    """Writes each accepted feedback table as one new Parquet object (blocking: run it off the
    event loop)."""

    def __init__(self, prediction_log_uri: str, hostname: str, store=None) -> None:
        from ferry.adapters.s3 import split

        self.uri = labels_uri(prediction_log_uri)
        self.bucket, prefix = split(self.uri)
        self.prefix = prefix.strip("/")
        self.hostname = hostname
        self._store = store
        self._seq = itertools.count(1)

    def write(self, table, now_ms: int) -> str:
        """Store ``table``; returns the new object's URI."""
        import pyarrow.parquet as pq

        if self._store is None:
            from ferry.serving.model import s3_store

            self._store = s3_store()
        key = object_key(self.prefix, "feedback", self.hostname, now_ms, next(self._seq))
        uri = f"s3://{self.bucket}/{key}"
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self._store.put_bytes(uri, buffer.getvalue())
        return uri
