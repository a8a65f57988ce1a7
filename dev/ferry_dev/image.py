"""Ferry's container image, built from the repository's ``Dockerfile`` without a Docker engine.

Two cached steps, each keyed by a content hash, each built once under a file lock:

- :func:`ensure_base_image`: a Debian base with Python, made locally with ``mmdebstrap`` (minbase
  plus ``python3``, ``python3-venv``, ``python-is-python3`` and ``ca-certificates``, no docs) and
  turned into an OCI layout with ``umoci``: ``<cache>/images/base-<key>/`` (tag ``bookworm``). Keyed
  by the suite and the package list.
- :func:`ensure_ferry_image`: ``buildah bud`` of the real ``Dockerfile`` with ``--build-arg
  PYTHON_IMAGE=<that base>``, buildah's storage under ``<cache>/images/buildah/``, then a smoke run
  of the image (the pod commands' ``--help``, the runtime imports, one real scikit-learn training
  run of the example trainer, as the image's user) and an OCI archive
  ``<cache>/images/ferry-<key>.oci.tar`` for ``ctr -n k8s.io images import``. Keyed by the
  Dockerfile, ``.dockerignore``, the build context the Dockerfile copies (``pyproject.toml``,
  ``README.md``, ``operator/``, after ``.dockerignore``) and the base's key; a second call with
  nothing changed only hashes those files (milliseconds) and never starts buildah.

The build context is staged from exactly the bytes that were hashed, so a file edited during a
build cannot end up in an image filed under another key. The ``RUN`` steps install from PyPI
(``--network host``); behind a TLS-inspecting proxy the host's CA bundle (``FERRY_BUILD_CA_BUNDLE``,
``PIP_CERT``, ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE`` or ``cert`` in the host's pip.conf) and
``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL`` reach pip through a pip.conf bind-mounted into the build
stage's ``RUN`` steps only: nothing of it is in a layer the final image copies.

Run ``python -m ferry_dev.image`` to build (or find) the image; it prints ``<reference> <archive>``.
Everything runs as root (mmdebstrap, buildah ``--isolation chroot``); the Debian packages are
mmdebstrap, umoci, buildah and skopeo.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ferry_dev.controlplane import cache_root
from ferry_dev.netns import host_command

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
VARIANT = "minbase"
BASE_PACKAGES = ("ca-certificates", "python-is-python3", "python3", "python3-venv")
# Merged /usr the debootstrap way (symlinks plus the usr-is-merged package): without it bookworm's
# init-system-helpers pulls in usrmerge and with it the full perl (~50 MB).
HOOK_DIRS = ("/usr/share/mmdebstrap/hooks/merged-usr",)
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
BASE_TAG = SUITE
BASE_NAME = "localhost/ferry-base"
IMAGE_NAME = "ghcr.io/ferry-dev/ferry"
# The build stage's last layer, tagged so that pruning keeps it (and the dependency layer below).
BUILD_NAME = "localhost/ferry-build"
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# Part of both keys: bump when the way an image is assembled or checked changes.
RECIPE = "1"
KEEP_ARCHIVES = 3
EXPECTED_USER = "65532:65532"
EXPECTED_ENTRYPOINT = ["ferry"]
HELP_STEP = "/opt/ferry/bin/ferry --help"
BUILD_CA = "/run/ferry-build-ca.pem"
# As the image's user, in its WORKDIR; MLflow's file store refuses to start since MLflow 3.x.
SMOKE = """set -eu
cd /tmp
export GIT_PYTHON_REFRESH=quiet
for command in operator serve features drift; do ferry "$command" --help > /dev/null; done
python -c 'import ferry.controllers.manager, ferry.serving.server, ferry.features.job, \\
ferry.drift.command, ferry.examples.trainer, sklearn, mlflow.sklearn, mlflow.pyfunc, \\
pyarrow.parquet, pandas, duckdb, scipy, orjson, aiohttp, boto3'
python -m ferry.examples.data --rows 400 --out /tmp/ferry-smoke/features/
python -m ferry.examples.trainer --features /tmp/ferry-smoke/features/ --target is_fraud \\
    --epochs 1 --tracking-uri sqlite:////tmp/ferry-smoke/mlflow.db --experiment smoke
"""


@dataclass(frozen=True)
class ImageArchive:
    """Ferry's image as an OCI archive; import it with ``ctr -n k8s.io images import``."""

    reference: str
    path: Path
    key: str


# --- keys (pure) ------------------------------------------------------------------------------


def _digest(document: object) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def base_key(packages: Iterable[str] = BASE_PACKAGES, suite: str = SUITE) -> str:
    """Content key of the base image: the suite, variant, packages and dpkg filters."""
    return _digest({"recipe": RECIPE, "suite": suite, "variant": VARIANT,
                    "packages": sorted(packages), "dpkg": list(DPKG_OPTIONS), "hooks": list(HOOK_DIRS),
                    "env": list(BASE_ENV)})


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus ``**``) as an anchored regex."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def parse_dockerignore(text: str) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, exception) rules of a .dockerignore, in order; later rules win."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if exception else line).lstrip("/")
        if pattern in ("", "."):
            continue
        rules.append((_pattern_regex(pattern), exception))
    return rules


def is_ignored(path: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is left out: a rule matching it or a parent."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for regex, exception in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not exception
    return ignored


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths the Dockerfile's COPY/ADD instructions read (not ``--from``)."""
    sources = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        words = shlex.split(line.strip(), comments=True) if line.strip() else []
        if len(words) < 3 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = words[1:]
        if any(arg.startswith("--from") for arg in args):
            continue
        for arg in [a for a in args if not a.startswith("--")][:-1]:
            source = os.path.normpath(arg).lstrip("/")
            if source not in sources:
                sources.append(source)
    return sources


def context_files(root: Path = ROOT) -> dict[str, tuple[int, bytes]]:
    """The build context the Dockerfile copies, after .dockerignore: path -> (mode, content).

    A symlink's content is its target. Read once: the key is computed from, and the build is
    staged from, these bytes.
    """
    dockerfile = (root / "Dockerfile").read_text()
    ignore = root / ".dockerignore"
    rules = parse_dockerignore(ignore.read_text() if ignore.exists() else "")
    prune = not any(exception for _, exception in rules)
    files: dict[str, tuple[int, bytes]] = {}

    def add(path: Path) -> None:
        relative = path.relative_to(root).as_posix()
        if is_ignored(relative, rules):
            return
        info = path.lstat()
        data = os.readlink(path).encode() if stat.S_ISLNK(info.st_mode) else path.read_bytes()
        files[relative] = (info.st_mode, data)

    for source in copy_sources(dockerfile):
        matches = sorted(root.glob(source)) if any(c in source for c in "*?[") else [root / source]
        for top in matches:
            if source == ".":
                top = root
            if top.is_symlink() or top.is_file():
                add(top)
                continue
            if not top.is_dir():
                raise RuntimeError(f"the Dockerfile copies {source}, which is not in {root}")
            for directory, dirs, names in os.walk(top):
                here = Path(directory)
                kept = []
                for name in sorted(dirs):
                    relative = (here / name).relative_to(root).as_posix()
                    if (here / name).is_symlink():
                        add(here / name)
                    elif not (prune and is_ignored(relative, rules)):
                        kept.append(name)
                dirs[:] = kept
                for name in sorted(names):
                    add(here / name)
    return files


def image_key(files: Mapping[str, tuple[int, bytes]], dockerfile: bytes, dockerignore: bytes,
              base: str) -> str:
    """Content key of Ferry's image: recipe, Dockerfile, .dockerignore, context files, base key."""
    digest = hashlib.sha256()
    for part in (RECIPE.encode(), dockerfile, dockerignore, base.encode()):
        digest.update(hashlib.sha256(part).digest())
    for path in sorted(files):
        mode, data = files[path]
        kind = "l" if stat.S_ISLNK(mode) else "f"
        digest.update(f"{path}\0{kind}{stat.S_IMODE(mode):o}\0".encode())
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def reference_for(key: str) -> str:
    return f"{IMAGE_NAME}:dev-{key[:12]}"


def check_image_config(config: Mapping) -> None:
    """The final image's OCI config runs ``ferry`` as the fixed non-root user; RuntimeError if not."""
    settings = config.get("config") or {}
    problems = []
    if settings.get("User") != EXPECTED_USER:
        problems.append(f"User is {settings.get('User')!r}, expected {EXPECTED_USER!r}")
    if settings.get("Entrypoint") != EXPECTED_ENTRYPOINT:
        problems.append(f"Entrypoint is {settings.get('Entrypoint')!r}, expected "
                        f"{EXPECTED_ENTRYPOINT!r}")
    if not any(item.startswith("PATH=/opt/ferry/bin:") for item in settings.get("Env") or []):
        problems.append("PATH does not start with /opt/ferry/bin")
    if problems:
        raise RuntimeError("the built image's config is wrong: " + "; ".join(problems))


# --- running tools ----------------------------------------------------------------------------


def images_dir() -> Path:
    return cache_root() / "images"


def require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: the image build needs the Debian "
                           "packages mmdebstrap, umoci, buildah and skopeo "
                           "(apt-get install --no-install-recommends mmdebstrap umoci buildah skopeo)")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(command: list[str], *, log: Path | None = None, verbose: bool = False,
        **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the machine's own network namespace (builds download from the package
    indexes even when called from inside the harness namespace); output goes to ``log`` (and
    stderr when verbose). RuntimeError with the command and the tail of its output when it fails."""
    argv, fds = host_command(command)
    kwargs["pass_fds"] = fds
    if log is None and not verbose:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                **kwargs)
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed (exit {result.returncode}):\n"
                               f"{_tail(result.stderr or result.stdout)}")
        return result
    collected: list[str] = []
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(log.open("a")) if log else None
        if sink:
            sink.write(f"$ {shlex.join(command)}\n")
            sink.flush()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace", **kwargs)
        assert process.stdout is not None
        for line in process.stdout:
            collected.append(line)
            if sink:
                sink.write(line)
            if verbose:
                sys.stderr.write(line)
        returncode = process.wait()
    if returncode != 0:
        where = f" (full log: {log})" if log else ""
        raise RuntimeError(f"{shlex.join(command)} failed (exit {returncode}){where}:\n"
                           f"{_tail(''.join(collected))}")
    return subprocess.CompletedProcess(command, returncode, "".join(collected), "")


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive fcntl lock on ``<cache>/images/.<name>.lock``: one build at a time."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with (images_dir() / f".{name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another {name} image build to finish", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


# --- the base ---------------------------------------------------------------------------------


def base_dir(key: str | None = None) -> Path:
    return images_dir() / f"base-{(key or base_key())[:16]}"


def ensure_base_image(verbose: bool = False) -> Path:
    """The OCI layout (tag ``bookworm``) of the local Debian base with Python; built when missing."""
    key = base_key()
    target = base_dir(key)
    if (target / "index.json").exists():
        return target
    with locked("base"):
        if (target / "index.json").exists():
            return target
        require("mmdebstrap", "mmtarfilter", "umoci")
        for hook in HOOK_DIRS:
            if not Path(hook).is_dir():
                raise RuntimeError(f"{hook} not found: it comes with mmdebstrap (>= 1.0)")
        work = images_dir() / f"{target.name}.tmp"
        _remove(work)
        work.mkdir(parents=True)
        log = images_dir() / f"{target.name}.log"
        log.write_text("")
        layout = work / "oci"
        started = time.monotonic()
        print(f"building the {SUITE} base image ({', '.join(BASE_PACKAGES)}) into {target}",
              file=sys.stderr)
        try:
            command = ["mmdebstrap", f"--variant={VARIANT}", f"--include={','.join(BASE_PACKAGES)}",
                       *[f"--dpkgopt={option}" for option in DPKG_OPTIONS],
                       *[f"--hook-dir={hook}" for hook in HOOK_DIRS],
                       "--format=tar", SUITE, str(work / "rootfs.tar")]
            if os.environ.get("FERRY_DEBIAN_MIRROR"):
                command.append(os.environ["FERRY_DEBIAN_MIRROR"])
            run(command, log=log, verbose=verbose)
            # Device nodes belong to the runtime, not to an image layer.
            with (work / "rootfs.tar").open("rb") as source, (work / "layer.tar").open("wb") as out:
                _filter(source, out)
            (work / "rootfs.tar").unlink()
            spec = f"{layout}:{BASE_TAG}"
            run(["umoci", "init", "--layout", str(layout)], log=log)
            run(["umoci", "new", "--image", spec], log=log)
            run(["umoci", "raw", "add-layer", "--image", spec, "--history.created_by",
                 f"mmdebstrap --variant={VARIANT} --include={','.join(BASE_PACKAGES)} {SUITE}",
                 str(work / "layer.tar")], log=log)
            run(["umoci", "config", "--image", spec, "--os", "linux", "--architecture",
                 _architecture(), *[f"--config.env={item}" for item in BASE_ENV],
                 "--config.cmd=python3", "--history.created_by", "ferry base config"], log=log)
            run(["umoci", "gc", "--layout", str(layout)], log=log)
            (work / "layer.tar").unlink()
            (layout / "ferry-base.json").write_text(json.dumps({
                "key": key, "suite": SUITE, "variant": VARIANT, "packages": list(BASE_PACKAGES),
                "seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
            os.replace(layout, target)
        finally:
            _remove(work)
        print(f"base image built in {time.monotonic() - started:.0f}s", file=sys.stderr)
        return target


def _filter(source, out) -> None:
    """mmtarfilter: the rootfs tarball without /dev's entries (the directory itself stays)."""
    result = subprocess.run(["mmtarfilter", "--path-exclude=/dev/*"], stdin=source, stdout=out,
                            stderr=subprocess.PIPE, text=False)
    if result.returncode != 0:
        raise RuntimeError(f"mmtarfilter --path-exclude=/dev/* failed (exit {result.returncode}):\n"
                           f"{_tail(result.stderr.decode(errors='replace'))}")


def _architecture() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


# --- Ferry's image ----------------------------------------------------------------------------


def storage_flags() -> list[str]:
    """buildah's global flags: its storage under the cache, the driver from FERRY_BUILDAH_DRIVER."""
    store = images_dir() / "buildah"
    return ["--root", str(store / "root"), "--runroot", str(store / "runroot"),
            "--storage-driver", _driver()]


def _driver() -> str:
    return os.environ.get("FERRY_BUILDAH_DRIVER", "overlay")


def _storage_transport(name: str) -> str:
    store = images_dir() / "buildah"
    return f"containers-storage:[{_driver()}@{store / 'root'}+{store / 'runroot'}]{name}"


@dataclass(frozen=True)
class Sources:
    """What the image is built from, read once: the key is computed from and the build context
    staged from these bytes, so a file edited meanwhile cannot land under another key."""

    files: dict[str, tuple[int, bytes]]
    dockerfile: bytes
    dockerignore: bytes
    key: str


def read_sources(root: Path = ROOT) -> Sources:
    files = context_files(root)
    dockerfile = (root / "Dockerfile").read_bytes()
    ignore = root / ".dockerignore"
    dockerignore = ignore.read_bytes() if ignore.exists() else b""
    return Sources(files, dockerfile, dockerignore,
                   image_key(files, dockerfile, dockerignore, base_key()))


def archive_for(key: str) -> ImageArchive:
    return ImageArchive(reference_for(key), images_dir() / f"ferry-{key[:16]}.oci.tar", key)


def current_archive(root: Path = ROOT) -> ImageArchive:
    """Where the image of the current sources is (or would be); computing it builds nothing."""
    return archive_for(read_sources(root).key)


def ensure_ferry_image(root: Path = ROOT, verbose: bool = False) -> ImageArchive:
    """Ferry's image for the current sources as an OCI archive; built (once) when missing."""
    image = current_archive(root)
    if image.path.exists():
        return image
    with locked("ferry"):
        # Read again under the lock: the sources may have changed while we waited.
        sources = read_sources(root)
        image = archive_for(sources.key)
        if image.path.exists():
            return image
        require("buildah", "skopeo")
        started = time.monotonic()
        base = ensure_base_image(verbose=verbose)
        base_seconds = time.monotonic() - started
        work = images_dir() / f"ferry-{image.key[:16]}.tmp"
        _remove(work)
        work.mkdir(parents=True)
        log = images_dir() / f"ferry-{image.key[:16]}.log"
        log.write_text("")
        partial = image.path.with_name(image.path.name + ".tmp")
        print(f"building {image.reference} with buildah (log: {log})", file=sys.stderr)
        try:
            base_ref = _load_base(base, log)
            _stage(sources, work)
            build_started = time.monotonic()
            built = run(["buildah", *storage_flags(), "bud", "--isolation", "chroot",
                         "--network", "host", "--layers", "--force-rm", "--pull=never",
                         "--format", "oci",
                         "--build-arg", f"PYTHON_IMAGE={base_ref}", *_pip_mounts(work),
                         "--file", str(work / "Dockerfile"), "--tag", image.reference,
                         str(work / "context")], log=log, verbose=verbose)
            _check_help_step(built.stdout)
            stage = build_stage_id(built.stdout)
            if stage:
                run(["buildah", *storage_flags(), "tag", stage,
                     f"{BUILD_NAME}:dev-{image.key[:12]}"], log=log)
            build_seconds = time.monotonic() - build_started
            smoke_started = time.monotonic()
            _smoke(image.reference, log, verbose)
            smoke_seconds = time.monotonic() - smoke_started
            layout = work / "oci"
            run(["buildah", *storage_flags(), "push", image.reference,
                 f"oci:{layout}:{image.reference}"], log=log)
            manifest_digest = _finish_layout(layout, image.reference)
            _write_archive(layout, partial)
            os.replace(partial, image.path)
            image.path.with_name(f"ferry-{image.key[:16]}.json").write_text(json.dumps({
                "reference": image.reference, "archive": str(image.path), "key": image.key,
                "manifest_digest": manifest_digest, "base": str(base),
                "size": image.path.stat().st_size, "base_seconds": round(base_seconds, 1),
                "build_seconds": round(build_seconds, 1), "smoke_seconds": round(smoke_seconds, 1),
                "seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
        finally:
            _remove(work, partial)
        _prune(keep=image)
        print(f"built {image.reference} in {time.monotonic() - started:.0f}s: {image.path} "
              f"({image.path.stat().st_size / 2**20:.0f} MiB)", file=sys.stderr)
        return image


def _load_base(base: Path, log: Path) -> str:
    """The base's name in buildah's storage, copying it there from its OCI layout when missing."""
    name = f"{BASE_NAME}:{base.name.removeprefix('base-')}"
    found = subprocess.run(["buildah", *storage_flags(), "inspect", "--type", "image", name],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if found.returncode != 0:
        run(["skopeo", "copy", "--quiet", f"oci:{base}:{BASE_TAG}", _storage_transport(name)],
            log=log)
    return name


def _stage(sources: Sources, work: Path) -> None:
    """The Dockerfile and the build context, written from the bytes the key was computed from."""
    (work / "Dockerfile").write_bytes(sources.dockerfile)
    context = work / "context"
    context.mkdir()
    (context / ".dockerignore").write_bytes(sources.dockerignore)
    for path, (mode, data) in sorted(sources.files.items()):
        target = context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(mode):
            target.symlink_to(data.decode())
        else:
            target.write_bytes(data)
            target.chmod(stat.S_IMODE(mode))


def build_ca_bundle() -> Path | None:
    """The CA bundle pip on this host trusts (for a TLS-inspecting proxy), if it names one."""
    for variable in ("FERRY_BUILD_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    for config in (Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"),
                   Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"):
        parser = configparser.ConfigParser()
        with contextlib.suppress(OSError, configparser.Error):
            parser.read(config)
            if parser.has_option("global", "cert"):
                return Path(parser.get("global", "cert"))
    return None


def _pip_mounts(work: Path) -> list[str]:
    """``--volume`` flags giving the build's pip this host's index and CA bundle (or nothing)."""
    settings = {}
    bundle = build_ca_bundle()
    mounts = []
    if bundle is not None:
        if not bundle.is_file():
            raise RuntimeError(f"the CA bundle for the build, {bundle}, is not a file")
        settings["cert"] = BUILD_CA
        mounts += ["--volume", f"{bundle.resolve()}:{BUILD_CA}:ro"]
    for variable, option in (("PIP_INDEX_URL", "index-url"),
                             ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
                             ("PIP_TRUSTED_HOST", "trusted-host")):
        if os.environ.get(variable):
            settings[option] = os.environ[variable]
    if not settings:
        return []
    conf = work / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return [*mounts, "--volume", f"{conf}:/etc/pip.conf:ro"]


def _check_help_step(output: str) -> None:
    """buildah's output shows the Dockerfile's ``ferry --help`` RUN step (run now or cached)."""
    # "STEP 6/7: RUN ...", "[1/2] STEP 6/7: RUN ..." in a multi-stage build.
    steps = [line for line in output.splitlines()
             if re.match(r"(\[\d+/\d+\] )?STEP \d+/\d+: RUN ", line)]
    if not any(HELP_STEP in line for line in steps):
        raise RuntimeError(f"the build ran no RUN step with {HELP_STEP!r}:\n{_tail(output)}")


def _smoke(reference: str, log: Path, verbose: bool) -> None:
    """The pod commands, the runtime imports and one sklearn training run, as the image's user."""
    container = run(["buildah", *storage_flags(), "from", "--pull=never", "--name",
                     f"ferry-smoke-{os.getpid()}", reference], log=log).stdout.strip().splitlines()[-1]
    try:
        run(["buildah", *storage_flags(), "run", "--isolation", "chroot", "--user", EXPECTED_USER,
             container, "--", "sh", "-c", SMOKE], log=log, verbose=verbose)
    finally:
        subprocess.run(["buildah", *storage_flags(), "rm", container], capture_output=True,
                       stdin=subprocess.DEVNULL)


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, value = digest.partition(":")
    return (layout / "blobs" / algorithm / value).read_bytes()


def _finish_layout(layout: Path, reference: str) -> str:
    """Check the image config and name the image for containerd; the manifest's digest."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    manifest = json.loads(_blob(layout, entry["digest"]))
    check_image_config(json.loads(_blob(layout, manifest["config"]["digest"])))
    # containerd names imported images by io.containerd.image.name, others by the OCI ref name.
    entry["annotations"] = {**entry.get("annotations", {}), "io.containerd.image.name": reference,
                            "org.opencontainers.image.ref.name": reference}
    (layout / "index.json").write_text(json.dumps(index))
    return entry["digest"]


def _write_archive(layout: Path, target: Path) -> None:
    """The OCI layout as an uncompressed tar (the layers inside are already gzipped)."""
    members = ["oci-layout", "index.json"] + sorted(
        path.relative_to(layout).as_posix() for path in (layout / "blobs").rglob("*")
        if path.is_file())
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name in members:
            info = archive.gettarinfo(str(layout / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode, info.mtime = 0o644, 0
            with (layout / name).open("rb") as handle:
                archive.addfile(info, handle)
        archive.fileobj.flush()
        os.fsync(archive.fileobj.fileno())


def build_stage_id(output: str) -> str | None:
    """The image ID buildah committed last in the first stage of a multi-stage build."""
    last = None
    for line in output.splitlines():
        if re.match(r"\[(\d+)/\d+\] STEP 1/", line) and not line.startswith("[1/"):
            return last
        found = re.fullmatch(r"--> ([0-9a-f]{6,64})", line.strip())
        if found:
            last = found.group(1)
    return None


def _prune(keep: ImageArchive) -> None:
    """Keep the newest KEEP_ARCHIVES archives (and their logs) and their images in buildah's
    storage; drop the other Ferry images and every untagged image left without a tagged
    descendant (each old build's copy of the venv is ~1 GB). The layers under a kept image, the
    dependency layer among them, stay: they are what makes a code-only rebuild take minutes."""
    archives = sorted(images_dir().glob("ferry-*.oci.tar"), key=lambda p: p.stat().st_mtime,
                      reverse=True)
    kept = [keep.path, *[a for a in archives if a != keep.path][:KEEP_ARCHIVES - 1]]
    for old in archives:
        if old not in kept:
            stem = old.name.removesuffix(".oci.tar")
            _remove(old, old.with_name(f"{stem}.json"))
    kept_stems = {a.name.removesuffix(".oci.tar") for a in kept}
    for log in images_dir().glob("ferry-*.log"):
        stem = log.name.removesuffix(".log")
        if stem not in kept_stems and not log.with_name(f"{stem}.tmp").exists():
            _remove(log)  # (a failed build's log; one with a .tmp is being written)
    # Best effort from here on: a failure leaves disk space taken, nothing wrong in the cache.
    listed = subprocess.run(["buildah", *storage_flags(), "images", "--format",
                             "{{.Name}}:{{.Tag}}"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    tags = {f"dev-{stem.removeprefix('ferry-')[:12]}" for stem in kept_stems}
    wanted = {f"{name}:{tag}" for name in (IMAGE_NAME, BUILD_NAME) for tag in tags}
    stale = [name for name in listed.stdout.split()
             if name.startswith((f"{IMAGE_NAME}:dev-", f"{BUILD_NAME}:dev-"))
             and name not in wanted]
    if stale:
        subprocess.run(["buildah", *storage_flags(), "rmi", *stale], capture_output=True,
                       stdin=subprocess.DEVNULL)
    # An untagged image is dangling once its children are gone: one pass per generation. (It
    # fails for an image a container still uses, after removing the others.)
    for _ in range(64):
        pruned = subprocess.run(["buildah", *storage_flags(), "rmi", "--prune"],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if not pruned.stdout.strip():
            break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferry_dev.image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", action="store_true", help="only the base image: print its path")
    parser.add_argument("--key", action="store_true",
                        help="print the reference and archive path of the current sources; "
                             "build nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="stream the build's output")
    args = parser.parse_args(argv)
    if args.base:
        print(ensure_base_image(verbose=args.verbose))
        return 0
    image = current_archive() if args.key else ensure_ferry_image(verbose=args.verbose)
    print(image.reference, image.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
