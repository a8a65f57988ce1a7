"""``ferry-dev up|down|status|env|shell``: the local environment, one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferry-dev",
        description="the local cluster (control plane, real node, KWOK fleet) and services")
    parser.add_argument("action", choices=["up", "down", "status", "env", "shell"])
    parser.add_argument("--state-dir", type=Path, help="default: ~/.cache/ferry/dev")
    parser.add_argument("--wipe", action="store_true",
                        help="down: also delete the state dir (MLflow registry, S3 data, logs)")
    parser.add_argument("--no-services", action="store_true", help="skip MLflow, S3, Prometheus")
    parser.add_argument("--operator", action="store_true", help="also run the operator")
    parser.add_argument("--examples", type=Path,
                        help="apply these manifests once up and wait until they are reconciled")
    parser.add_argument("shell_command", nargs="*", metavar="COMMAND",
                        help="shell: the command to run inside the environment (default: $SHELL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ferry_dev import devenv

    return devenv.main(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
