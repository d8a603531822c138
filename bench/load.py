"""Load benchmark: mixed Locust load on the jangkau services next to a plain gRPC
echo server, both measured in this run, on this machine, the same way (the same
Locust user base, client stack, number of users and duration).

    python bench/load.py [--seconds 60] [--users 20] [--rounds 4] [--without-feeds] [--spread-echo]

The two phases take turns in `rounds` rounds (echo, then mixed, each for
seconds/rounds), so that a machine whose speed drifts during the run (a shared
host) slows both alike; each phase's figures pool its rounds. Prints each
phase's per-RPC table (throughput, p50, p95, failures) and the CPU each process
used (cores, and CPU milliseconds per request, from /proc), each round's ratio,
the p95 of the read RPCs under the mixed load, and as last line

    load rps: mixed=<n> echo=<n> ratio=<r> failures=<n>

`--spread-echo` adds a diagnostic phase to each round: the same echo calls spread over
three echo servers in the proportions the buyers call budget, metrics and audience,
which tells what the split over three processes alone costs.

Targets: mixed >= 50% of echo with zero failures; read p95 <= 50 ms. The
services run as subprocesses on free loopback ports (the `jangkau up` launcher),
the echo server as one more subprocess; Locust runs in this process.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The load-test package lives at the repository root, beside this folder.
sys.path.insert(0, str(ROOT))

from locust import User, constant, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from loadtests import echo  # noqa: E402
from loadtests.grpc_user import GrpcUser  # noqa: E402
from loadtests.locustfile import USER_CLASSES  # noqa: E402
from loadtests.run import (  # noqa: E402
    READ_METHODS,
    LoadResult,
    format_table,
    run_users,
    services,
)
from loadtests.scenario import attach, prepare  # noqa: E402

READ_P95_TARGET_MS = 50.0
RATIO_TARGET = 0.5
# Request bytes of one echo call: about the size of a typical jangkau read reply.
ECHO_PAYLOAD = b"j" * 256


class EchoUser(GrpcUser):
    """Calls the echo server back to back (its address is the environment's host)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.echo = self.channel(self.host).unary_unary(echo.METHOD)

    @task
    def echo_call(self) -> None:
        self.echo(ECHO_PAYLOAD, timeout=self.timeout)


# The buyers' calls per service, from their task weights in loadtests.locustfile.Buyer:
# budget 10 (GetCampaign 4, ListCampaigns, Allocate and ListDecisions 2 each), metrics
# 6 (GetCampaignSummary and GetTimeseries 3 each), audience 2 (EstimateSize).
SPREAD_WEIGHTS = (10, 6, 2)


class SpreadEchoUser(GrpcUser):
    """Calls three echo servers back to back (their addresses, comma-separated, are
    the environment's host), each call to one drawn in SPREAD_WEIGHTS' proportions."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.echoes = [self.channel(a).unary_unary(echo.METHOD) for a in self.host.split(",")]
        self.draw = random.Random()

    @task
    def echo_call(self) -> None:
        self.draw.choices(self.echoes, SPREAD_WEIGHTS)[0](ECHO_PAYLOAD, timeout=self.timeout)


def start_echo_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtests.echo", "127.0.0.1:0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening "):
        process.kill()
        raise SystemExit(f"echo server did not start: {line!r}")
    return process, f"127.0.0.1:{int(line.split()[1])}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(
    pids: dict[str, int], run: Callable[[], LoadResult]
) -> tuple[LoadResult, dict[str, float]]:
    """Runs a phase; returns its result and the CPU seconds each process used
    meanwhile ("locust" is this process: the users and their client stack)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = time.process_time()
    result = run()
    used = {"locust": time.process_time() - own}
    used.update({name: cpu_seconds(pid) - before[name] for name, pid in pids.items()})
    return result, used


def cpu_line(result: LoadResult, used: Mapping[str, float]) -> str:
    cores = " ".join(f"{name}={seconds / result.seconds:.2f}" for name, seconds in used.items())
    per_request = sum(used.values()) * 1000 / max(result.requests, 1)
    return f"cpu cores: {cores}; {per_request:.2f} ms of CPU per request"


def measure_echo(
    address: str, users: int, seconds: float, user_class: type[User] = EchoUser
) -> LoadResult:
    def setup(environment: Environment) -> None:
        environment.host = address

    return run_users([user_class], users=users, seconds=seconds, setup=setup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="each phase (60)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (20)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="turns each phase takes, alternating (4)"
    )
    parser.add_argument(
        "--without-feeds",
        action="store_true",
        help="diagnostic: leave out the report feeds (no writes but the rebalances); "
        "the last line then says so",
    )
    parser.add_argument(
        "--spread-echo",
        action="store_true",
        help="diagnostic: also an echo spread over three servers as the buyers' calls are",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds and --seconds must be positive")
    turn = args.seconds / args.rounds
    user_classes = [u for u in USER_CLASSES if not (args.without_feeds and u.is_feed)]

    echo_rounds: list[LoadResult] = []
    mixed_rounds: list[LoadResult] = []
    echo_cpu: Counter[str] = Counter()
    mixed_cpu: Counter[str] = Counter()
    spread_rounds: list[LoadResult] = []
    spread_cpu: Counter[str] = Counter()
    echo_server, echo_address = start_echo_server()
    spread_servers = [start_echo_server() for _ in SPREAD_WEIGHTS] if args.spread_echo else []
    spread_address = ",".join(address for _, address in spread_servers)
    try:
        with services() as target:
            world = prepare(target.addresses)
            print(
                f"{args.rounds} rounds of echo then mixed, {turn:.0f} s each, {args.users} users",
                flush=True,
            )
            for number in range(1, args.rounds + 1):
                echo_round, used = with_cpu(
                    {"echo-server": echo_server.pid},
                    lambda: measure_echo(echo_address, args.users, turn),
                )
                echo_rounds.append(echo_round)
                echo_cpu.update(used)
                if spread_servers:
                    spread_round, used = with_cpu(
                        {f"echo-{i + 1}": p.pid for i, (p, _) in enumerate(spread_servers)},
                        lambda: measure_echo(spread_address, args.users, turn, SpreadEchoUser),
                    )
                    spread_rounds.append(spread_round)
                    spread_cpu.update(used)
                mixed_round, used = with_cpu(
                    target.pids,
                    lambda: run_users(
                        user_classes,
                        users=args.users,
                        seconds=turn,
                        setup=lambda environment: attach(environment, world),
                    ),
                )
                mixed_rounds.append(mixed_round)
                mixed_cpu.update(used)
                print(
                    f"round {number}: mixed={mixed_round.rps:.0f} echo={echo_round.rps:.0f} "
                    f"ratio={mixed_round.rps / max(echo_round.rps, 1e-9):.2f}",
                    flush=True,
                )
    finally:
        for process, _ in [(echo_server, echo_address), *spread_servers]:
            process.terminate()
            process.wait(10)
    baseline = LoadResult.merged(echo_rounds)
    mixed = LoadResult.merged(mixed_rounds)
    print(f"== echo: {args.users} users, {baseline.seconds:.0f} s")
    print(format_table(baseline))
    print(cpu_line(baseline, echo_cpu))
    print(f"== mixed: {args.users} users, {mixed.seconds:.0f} s")
    reads = mixed.combined(READ_METHODS, "reads")
    print(format_table(mixed, [reads]))
    print(cpu_line(mixed, mixed_cpu))
    ratio = mixed.rps / baseline.rps if baseline.rps else 0.0
    if spread_rounds:
        spread = LoadResult.merged(spread_rounds)
        weights = "/".join(map(str, SPREAD_WEIGHTS))
        print(
            f"== echo spread over three servers ({weights}): "
            f"{args.users} users, {spread.seconds:.0f} s"
        )
        print(format_table(spread))
        print(cpu_line(spread, spread_cpu))
        print(
            f"spread echo: {spread.rps:.0f} rps, {spread.rps / max(baseline.rps, 1e-9):.2f} of "
            f"the one-server echo; mixed is {mixed.rps / max(spread.rps, 1e-9):.2f} of it"
        )
    failures = mixed.failures + baseline.failures
    print(f"reads p95 under mixed load: {reads.p95_ms:.0f} ms (target <= {READ_P95_TARGET_MS:.0f})")
    print(
        f"targets: ratio >= {RATIO_TARGET} {'met' if ratio >= RATIO_TARGET else 'MISSED'}, "
        f"reads p95 {'met' if reads.p95_ms <= READ_P95_TARGET_MS else 'MISSED'}, "
        f"failures {'none' if failures == 0 else failures}"
    )
    label = "load rps (without feeds)" if args.without_feeds else "load rps"
    print(
        f"{label}: mixed={mixed.rps:.0f} echo={baseline.rps:.0f} ratio={ratio:.2f} "
        f"failures={failures}"
    )
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
