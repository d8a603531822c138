"""How the CLI talks to people and scripts: tables by default, JSON with --json,
errors in one line naming the field, stable exit codes, progress bars on stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

# Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_FAILED = 1  # the work ran but something failed (a campaign in a rebalance, a server error)
EXIT_USAGE = 2  # bad arguments or input (INVALID_ARGUMENT)
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4  # UNAUTHENTICATED or PERMISSION_DENIED
EXIT_UNAVAILABLE = 5  # a service could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
EXIT_CONFLICT = 6  # FAILED_PRECONDITION or ALREADY_EXISTS

_CODE_EXITS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_CONFLICT,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_CONFLICT,
}


class CliError(Exception):
    """A failure to report in one line with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def rpc_error(exc: grpc.RpcError) -> CliError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return CliError(f"{code.name.lower()}: {details}", _CODE_EXITS.get(code, EXIT_FAILED))


def fail(error: CliError) -> int:
    print(f"error: {error.message}", file=sys.stderr)
    return error.exit_code


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def emit_json(value: Any) -> None:
    if isinstance(value, Message):
        value = as_dict(value)
    elif isinstance(value, list):
        value = [as_dict(v) if isinstance(v, Message) else v for v in value]
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """A plain text table; columns in `right` are right-aligned (numbers)."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    right_set = set(right)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right_set else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in text_rows)
    return "\n".join(out)


T = TypeVar("T")


def progress(items: Sequence[T], label: str, enabled: bool | None = None) -> Iterator[T]:
    """Yields the items, drawing a bar on stderr: redrawn in place on a terminal, a
    line every tenth of the way otherwise (logs stay short). `enabled=False` hides it;
    by default it shows on a terminal only."""
    tty = sys.stderr.isatty()
    show = tty if enabled is None else enabled
    total = len(items)
    started = time.monotonic()
    last_draw = 0.0
    next_line = 0.1
    for i, item in enumerate(items, start=1):
        yield item
        if not show:
            continue
        now = time.monotonic()
        done = i / max(total, 1)
        if tty and (now - last_draw > 0.1 or i == total):
            last_draw = now
            filled = int(30 * done)
            bar = "#" * filled + "." * (30 - filled)
            print(
                f"\r{label} [{bar}] {i}/{total} {now - started:5.1f}s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        elif not tty and (done >= next_line or i == total):
            next_line = (int(done * 10) + 1) / 10
            print(f"{label}: {i}/{total} {now - started:5.1f}s", file=sys.stderr, flush=True)
    if show and tty:
        print(file=sys.stderr)
