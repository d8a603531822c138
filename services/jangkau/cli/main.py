"""Entry point of the `jangkau` command. Each subcommand lives in a module of
this package and registers itself on the parser."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jangkau.cli import ops

# Modules that add subcommands: each has `register(subparsers)`.
_COMMAND_MODULES = [ops]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jangkau",
        description="Allocates an election campaign's ad budget across platforms and audiences.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    for optional in ("jangkau.cli.buyer", "jangkau.cli.rebalance", "jangkau.cli.demo"):
        try:
            module = __import__(optional, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != optional:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args) or EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
