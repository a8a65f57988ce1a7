"""Sticky assignment of requests to the variants of an experiment (pure, standard library only).

A request's key (``spec.strategy.experiment.assignment``: a header, a cookie or a body field,
usually a user id) is hashed with the experiment's salt into one of ``BUCKETS`` buckets, and the
variants own consecutive ranges of buckets in proportion to their weights (50/30/20 → buckets
0–4999, 5000–7999, 8000–9999). Why this way:

- **SHA-256, not ``hash()``**: Python salts ``hash()`` per process, so two replicas (or one
  replica after a restart) would disagree. SHA-256 of the UTF-8 bytes is the same everywhere and
  in any language, so a router in front of Ferry could reproduce it. The first 8 bytes taken modulo
  10 000 have a bias below 10⁻¹⁵.
- **The salt is new per experiment** (``salt(namespace, service, started_at)``): the same users
  are not always in the treatment of every experiment one after the other (a carry-over effect).
- **Weights in basis points of one range**: a weight of 33 is exactly 3 300 buckets.

Requests the experiment must not count (their variant comes with ``counted=False``):

- **an override** (``overrideHeader``, default ``ferry-variant``, naming a variant): testers
  forcing a variant would bias its counts and break the sample-ratio check, so, as forced
  variations in Optimizely or LaunchDarkly, they get the variant and stay out of the results. A
  value that names no variant is ignored (the request is assigned as usual);
- **no key** (absent, empty, or a batch whose rows carry different keys): the control serves it.
  A random variant per request would show one user several models and mix their outcomes across
  variants; counting keyless traffic (health checks, bots, anonymous clients) in the control would
  make the control's metric describe other users and trip the sample-ratio check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ferry.api.inferenceservice import Assignment, Experiment

BUCKETS = 10_000


def salt(namespace: str, service: str, started_at: str) -> str:
    """The salt of one run of an experiment: a restarted experiment reshuffles its users."""
    return f"{namespace}/{service}/{started_at}"


def bucket(salt_: str, key: str) -> int:
    """The key's bucket in [0, BUCKETS): the same in every process, replica and release."""
    digest = hashlib.sha256(f"{salt_}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Assigned:
    variant: str
    counted: bool  # part of the experiment's sample: only hashed keys are
    source: Literal["hash", "override", "noKey"]


@dataclass(frozen=True)
class Assigner:
    """The variants of one experiment run as bucket ranges; cheap to call per request."""

    salt: str
    names: tuple[str, ...]
    ends: tuple[int, ...]  # variant i owns buckets [ends[i-1], ends[i])
    override_header: str

    @classmethod
    def of(cls, experiment: Experiment, salt_: str) -> Assigner:
        ends, total = [], 0
        for variant in experiment.variants:
            total += variant.weight * BUCKETS // 100
            ends.append(total)
        return cls(salt_, tuple(v.name for v in experiment.variants), tuple(ends),
                   experiment.override_header)

    @property
    def control(self) -> str:
        return self.names[0]

    def variant_of(self, key: str) -> str:
        spot = bucket(self.salt, key)
        return next(name for name, end in zip(self.names, self.ends, strict=True) if spot < end)

    def assign(self, key: str | None, headers: Mapping[str, str] | None = None) -> Assigned:
        """The variant for a request with ``key`` (None: none found) and these headers."""
        forced = header(headers or {}, self.override_header)
        if forced is not None and forced.strip() in self.names:
            return Assigned(forced.strip(), False, "override")
        if key is None:
            return Assigned(self.control, False, "noKey")
        return Assigned(self.variant_of(key), True, "hash")


def request_key(source: Assignment, headers: Mapping[str, str], document: Any = None) -> str | None:
    """The sticky key of a request: its header, cookie or JSON body field (``document``, the
    parsed body, only needed for ``bodyField``); None when it has none."""
    if source.header is not None:
        return _text(header(headers, source.header))
    if source.cookie is not None:
        return _text(cookie(header(headers, "cookie"), source.cookie))
    return body_key(document, source.body_field)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by its case-insensitive name (any mapping: a dict, aiohttp's CIMultiDict...)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def cookie(value: str | None, name: str) -> str | None:
    """One cookie of a Cookie header. Parsed leniently, as browsers send it: ``http.cookies``
    rejects the whole header for one malformed pair, which would silently drop users' keys."""
    for pair in (value or "").split(";"):
        key, equals, found = pair.partition("=")
        if equals and key.strip() == name:
            return found.strip().strip('"')
    return None


def body_key(document: Any, field: str) -> str | None:
    """A key in a JSON body, first found of: OIP v2 ``parameters.<field>`` (where a client puts
    per-request metadata); a column of that name — an OIP v2 input, a ``dataframe_split`` column
    or a ``dataframe_records`` key — when all its rows hold one value (a batch of several users'
    rows cannot go to one variant per user, so it has no key); a top-level key of any other body."""
    if not isinstance(document, dict):
        return None
    parameters = document.get("parameters")
    if isinstance(parameters, dict) and field in parameters:
        return _text(parameters[field])
    column = _column(document, field)
    if column is not None:
        values = {_text(value) for value in column}
        return values.pop() if len(values) == 1 else None
    return _text(document.get(field))


def _column(document: dict, field: str) -> list | None:
    for tensor in document.get("inputs") or ():
        if isinstance(tensor, dict) and tensor.get("name") == field:
            return _flat(tensor.get("data"))
    split = document.get("dataframe_split")
    if isinstance(split, dict) and field in (split.get("columns") or ()):
        index = split["columns"].index(field)
        return [row[index] if isinstance(row, list) and index < len(row) else None
                for row in split.get("data") or ()]
    records = document.get("dataframe_records")
    if isinstance(records, list) and any(isinstance(r, dict) and field in r for r in records):
        return [r.get(field) if isinstance(r, dict) else None for r in records]
    return None


def _flat(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    return [value for item in data for value in _flat(item)]


def _text(value: Any) -> str | None:
    """A key as text: strings as they are, integers (and whole floats: a JSON client may send
    7.0 for 7) in decimal; anything else, or an empty string, is no key."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None
