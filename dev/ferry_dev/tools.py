"""Developer tools built from their official Go modules: Helm; and the Gateway API's CRDs, read
from theirs.

Helm is built like the control plane (``GOTOOLCHAIN=local``, pinned in ``pins.env``) but into its
own cache directory ``~/.cache/ferry/bin/helm-<HELM_VERSION>/``, so changing the Helm pin never
rebuilds Kubernetes and vice versa. Helm's ``go.mod`` has no ``replace`` directives, so a plain
``go install <module>@<version>`` works. Release builds stamp the version through ldflags; we do
the same so ``helm version`` reports the pin instead of a bare major.minor.

Run ``python -m ferry_dev.tools`` (``make helm``) to build it; prints the binary's path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ferry_dev.controlplane import cache_root, read_pins
from ferry_dev.netns import host_command

HELM_MODULE = "helm.sh/helm/v3"
CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "ferry"
# Helm's default capabilities claim Kubernetes v1.20; render for the version we run.
KUBE_VERSION_FLAG = ("--kube-version", read_pins()["KUBE_VERSION"].lstrip("v"))


def helm_dir(version: str | None = None) -> Path:
    return cache_root() / "bin" / f"helm-{version or read_pins()['HELM_VERSION']}"


def helm_build_command(version: str, bin_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The ``go install`` command line and environment that build Helm ``version`` into ``bin_dir``."""
    ldflags = f"-s -w -X {HELM_MODULE}/internal/version.version={version}"
    env = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": str(bin_dir)}
    return ["go", "install", "-trimpath", f"-ldflags={ldflags}", f"{HELM_MODULE}/cmd/helm@{version}"], env


def ensure_helm() -> Path:
    """Path of the pinned ``helm`` binary, building it when the cache is not complete."""
    version = read_pins()["HELM_VERSION"]
    target = helm_dir(version)
    helm = target / "helm"
    if (target / ".complete").exists() and helm.exists():
        return helm
    if shutil.which("go") is None:
        raise RuntimeError("go (>= 1.24) is required to build helm from its Go module")
    target.mkdir(parents=True, exist_ok=True)
    command, env = helm_build_command(version, target)
    print(f"building helm {version} into {target}", file=sys.stderr)
    start = time.monotonic()
    argv, _ = host_command(command)  # a test session's namespace has no route to the module proxy
    subprocess.run(argv, check=True, env={**os.environ, **env})
    (target / ".complete").write_text(f"built in {time.monotonic() - start:.0f}s\n")
    return helm


def helm(*args: str, kubeconfig: str | None = None, check: bool = True,
         timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the pinned helm with its state (cache, config, data) kept out of the user's home."""
    state = cache_root() / "helm-state"
    env = {**os.environ, "HELM_CACHE_HOME": str(state / "cache"),
           "HELM_CONFIG_HOME": str(state / "config"), "HELM_DATA_HOME": str(state / "data")}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run([str(ensure_helm()), *args], env=env, capture_output=True, text=True,
                          check=check, timeout=timeout)


GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"


def gateway_api_crds(version: str | None = None, channel: str = "standard") -> list[Path]:
    """The Gateway API's own CRD files of ``version`` (default: the pin) and ``channel``, from its
    Go module (downloaded into the module cache once; nothing is built). The download goes out
    through the machine's own network: a test session runs inside the harness's namespace,
    which has no route to the module proxy."""
    version = version or read_pins()["GATEWAY_API_VERSION"]
    argv, _ = host_command(["go", "mod", "download", "-json", f"{GATEWAY_API_MODULE}@{version}"])
    found = subprocess.run(argv, capture_output=True, text=True, cwd=cache_root(),
                           env=os.environ | {"GOTOOLCHAIN": "local"})
    if found.returncode != 0:
        raise RuntimeError(f"go mod download {GATEWAY_API_MODULE}@{version}: "
                           f"{found.stdout[-2000:]}{found.stderr[-2000:]}")
    folder = Path(json.loads(found.stdout)["Dir"]) / "config" / "crd" / channel
    files = sorted(folder.glob("gateway.networking.k8s.io_*.yaml"))
    if not files:
        raise RuntimeError(f"{GATEWAY_API_MODULE}@{version} has no CRDs under {folder}")
    return files


def render_chart(*flags: str, release: str = "ferry", namespace: str = "ferry-system",
                 chart: Path = CHART_DIR) -> list[dict]:
    """``helm template`` of the chart as a list of objects (``flags``: -f FILE, --set K=V, ...)."""
    out = helm("template", release, str(chart), "--namespace", namespace, *KUBE_VERSION_FLAG,
               *flags).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


if __name__ == "__main__":
    # ``make helm``: the Gateway API's CRDs are fetched here too, so tests only read the cache.
    print(ensure_helm())
    print(gateway_api_crds()[0].parent)
