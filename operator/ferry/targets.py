"""What the CLI's object commands share: ``kind/NAME`` arguments and a client for the context."""

from __future__ import annotations

from ferry.api import KINDS, KindInfo, kind_named


class TargetError(ValueError):
    """A ``kind/NAME`` the command cannot act on; the message says what it accepts."""


def _names(info: KindInfo) -> str:
    return "/".join((*info.short_names, info.singular, info.plural))


def parse_target(text: str, kinds: tuple[str, ...] = tuple(KINDS)) -> tuple[KindInfo, str]:
    """``infsvc/fraud`` → (InferenceService, "fraud"); any of ``kinds``' kubectl names will do."""
    word, slash, name = text.partition("/")
    accepted = ", ".join(_names(KINDS[kind]) for kind in kinds)
    if not slash or not name or not word:
        raise TargetError(f"{text!r} is not KIND/NAME (KIND: {accepted})")
    try:
        info = kind_named(word)
    except KeyError:
        info = None
    if info is None or info.kind not in kinds:
        raise TargetError(f"unknown kind {word!r}: use {accepted}")
    return info, name


def connect(kubeconfig: str | None, namespace: str | None):
    """An API client for the kubeconfig's current context, and the namespace to use: ``-n``,
    else the context's namespace, else ``default`` (as kubectl)."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    current = config.list_kube_config_contexts(kubeconfig)[1]
    return api_client, namespace or current["context"].get("namespace", "default")
