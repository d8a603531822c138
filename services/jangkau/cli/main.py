"""Entry point of the `jangkau` command. Each subcommand lives in a module of
this package and registers itself on the parser."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jangkau.cli import buyer, demo, ops, rebalance
from jangkau.cli.output import EXIT_FAILED, EXIT_OK

# Modules that add subcommands: each has `register(subparsers)`.
_COMMAND_MODULES = [ops, buyer, rebalance, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jangkau",
        description="Allocates an election campaign's ad budget across platforms and audiences.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except BrokenPipeError:
        # The reader went away (`jangkau ... | head`): stop without a traceback, and
        # without another one when Python flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
