"""The Kubernetes API as the reconcilers need it, on the official client in the "kube" pool."""

from __future__ import annotations

import json
from collections.abc import Callable

from kubernetes import client, config as kube_config
from kubernetes.client.rest import ApiException

from ferry.adapters.executors import Executors
from ferry.api import GROUP, VERSION, KindInfo


def load_client_config(kubeconfig: str | None = None, pool_size: int = 8) -> client.Configuration:
    """In-cluster config inside a pod, else the kubeconfig (explicit path, $KUBECONFIG or default)."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            raise kube_config.ConfigException("explicit kubeconfig")
        kube_config.load_incluster_config(client_configuration=configuration)
    except kube_config.ConfigException:
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = max(pool_size, 4)
    return configuration


FIELD_MANAGER = "ferry"


def _plain(_client, data: dict) -> dict:
    """Keep the decoded JSON as it is: wrapping it in ResourceInstance and converting it back
    with ``to_dict()`` costs more CPU than the request itself when thousands of objects reconcile."""
    return data


class NotLeading(Exception):
    """This replica's leadership is not current: it writes nothing (see ``ferry.leader``)."""


class ChildRejected(Exception):
    """The apiserver refused a child built from the spec (400/422): retrying the same spec cannot
    help, so the object says why instead of failing with a traceback."""

    def __init__(self, manifest: dict, error: ApiException) -> None:
        try:
            reason = json.loads(error.body)["message"]
        except (TypeError, ValueError, KeyError):
            reason = str(error.reason)
        super().__init__(f"the apiserver refused {manifest['kind']} "
                         f"{manifest['metadata']['name']}: {reason}")


class Kube:
    def __init__(self, api_client: client.ApiClient, executors: Executors,
                 leading: Callable[[], bool] = lambda: True) -> None:
        """``leading``: asked right before every write, in the pool thread that sends it, so a
        write that waited in the queue while leadership lapsed is refused too."""
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.executors = executors
        self.leading = leading
        self._dynamic = None

    def _fence(self) -> None:
        if not self.leading():
            raise NotLeading("leadership lapsed (paused past the renew deadline, or released)")

    def _resource(self, api_version: str, kind: str):
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient

            self._dynamic = DynamicClient(self.api_client)
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    async def apply(self, manifest: dict) -> dict:
        """Server-side apply as the ``ferry`` field manager: create or converge, idempotently."""
        def run():
            self._fence()
            resource = self._resource(manifest["apiVersion"], manifest["kind"])
            try:
                return resource.server_side_apply(
                    body=manifest, name=manifest["metadata"]["name"],
                    namespace=manifest["metadata"].get("namespace"), field_manager=FIELD_MANAGER,
                    force_conflicts=True, serializer=_plain)
            except ApiException as error:
                if error.status in (400, 422):
                    raise ChildRejected(manifest, error) from error
                raise

        return await self.executors.run("kube", run)

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict]:
        def run():
            resource = self._resource(api_version, kind)
            return resource.get(namespace=namespace, label_selector=selector,
                                serializer=_plain)["items"]

        return await self.executors.run("kube", run)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        def run():
            resource = self._resource(api_version, kind)
            try:
                return resource.get(name=name, namespace=namespace, serializer=_plain)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

        return await self.executors.run("kube", run)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete with background propagation; a missing object is fine."""
        def run():
            self._fence()
            resource = self._resource(api_version, kind)
            try:
                resource.delete(name=name, namespace=namespace,
                                body={"propagationPolicy": "Background"})
            except ApiException as error:
                if error.status != 404:
                    raise

        await self.executors.run("kube", run)

    async def patch_status(self, info: KindInfo, namespace: str, name: str,
                           status: dict) -> str | None:
        """Merge-patch the status subresource; the resourceVersion it produced. A vanished object
        is not an error (None)."""
        def run():
            self._fence()
            return self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, info.plural, name, {"status": status})

        try:
            patched = await self.executors.run("kube", run)
        except ApiException as error:
            if error.status != 404:
                raise
            return None
        return patched.get("metadata", {}).get("resourceVersion")
