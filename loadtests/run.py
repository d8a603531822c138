"""`make loadtest`: Locust, headless, against the jangkau services for a set time.

    python -m loadtests.run [--seconds 60] [--users 20]
    python -m loadtests.run --running                 # the services of `jangkau up`
    python -m loadtests.run --audience H:P --budget H:P --metrics H:P --token T

Without addresses it starts audience, metrics and budget with the launcher of
`jangkau up` on free loopback ports in a temporary data folder, and stops them at
the end. It creates audiences and campaigns through the client, runs the users
of `loadtests.locustfile`, prints one row per RPC (requests, RPS, p50, p95,
failures) and exits 1 when any request failed or any user task raised.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import grpc
from locust import User
from locust.env import Environment
from locust.stats import RequestStats, StatsEntry

from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.config import Settings
from jangkau.runtime.launcher import DEFAULT_SERVICES, Cluster
from loadtests.locustfile import USER_CLASSES
from loadtests.scenario import DEV_SERVICE_TOKEN, attach, prepare

# RPCs that only read: their p95 is the latency target under load.
READ_METHODS = frozenset(
    {
        "GetCampaign",
        "ListCampaigns",
        "GetCampaignSummary",
        "GetTimeseries",
        "Allocate",
        "ListDecisions",
        "EstimateSize",
    }
)
# Seconds users get to finish the task in hand when the time is up.
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class RpcRow:
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float


@dataclass
class LoadResult:
    """What one Locust run measured."""

    stats: RequestStats
    seconds: float
    # Exceptions in user tasks that were not failed RPCs (already counted in stats).
    task_errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.stats.total.num_requests

    @property
    def failures(self) -> int:
        return self.stats.total.num_failures + len(self.task_errors)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def row(self, entry: StatsEntry, name: str | None = None) -> RpcRow:
        return RpcRow(
            name=name or entry.name,
            requests=entry.num_requests,
            failures=entry.num_failures,
            rps=entry.num_requests / self.seconds if self.seconds > 0 else 0.0,
            p50_ms=entry.get_response_time_percentile(0.5),
            p95_ms=entry.get_response_time_percentile(0.95),
        )

    def rows(self) -> list[RpcRow]:
        return [self.row(e) for _, e in sorted(self.stats.entries.items())]

    def combined(self, names: frozenset[str], label: str) -> RpcRow:
        """One row over several RPCs (percentiles of their pooled response times)."""
        pooled = StatsEntry(self.stats, label, "grpc")
        for entry in self.stats.entries.values():
            if entry.name in names:
                pooled.extend(entry)
        return self.row(pooled, label)

    def total(self) -> RpcRow:
        return self.row(self.stats.total, "all")

    @classmethod
    def merged(cls, results: Sequence[LoadResult]) -> LoadResult:
        """Several runs as one: their requests pooled per RPC, their times added."""
        stats = RequestStats()
        for result in results:
            for entry in result.stats.entries.values():
                stats.get(entry.name, entry.method).extend(entry)
            stats.total.extend(result.stats.total)
        return cls(
            stats,
            sum(r.seconds for r in results),
            [e for r in results for e in r.task_errors],
        )


def run_users(
    user_classes: Sequence[type[User]],
    *,
    users: int,
    seconds: float,
    setup: Callable[[Environment], None] = lambda environment: None,
) -> LoadResult:
    """Runs the users for `seconds` in this process (Locust's library API) and
    returns the stats; `setup` prepares the environment before users spawn."""
    environment = Environment(
        user_classes=list(user_classes), stop_timeout=STOP_GRACE_SECONDS, catch_exceptions=True
    )
    setup(environment)
    task_errors: list[str] = []

    def on_user_error(user_instance: User, exception: BaseException, tb: object) -> None:
        if not isinstance(exception, grpc.RpcError):
            task_errors.append(f"{type(user_instance).__name__}: {exception!r}")

    environment.events.user_error.add_listener(on_user_error)
    runner = environment.create_local_runner()
    started = time.monotonic()
    runner.start(users, spawn_rate=users)
    gevent.spawn_later(seconds, runner.quit)
    runner.greenlet.join()
    return LoadResult(environment.stats, time.monotonic() - started, task_errors)


def format_table(result: LoadResult, extra: Sequence[RpcRow] = ()) -> str:
    header = f"{'rpc':<20} {'requests':>9} {'rps':>8} {'p50 ms':>7} {'p95 ms':>7} {'failures':>8}"
    lines = [header, "-" * len(header)]
    for row in [*result.rows(), *extra, result.total()]:
        lines.append(
            f"{row.name:<20} {row.requests:>9} {row.rps:>8.1f} {row.p50_ms:>7.0f} "
            f"{row.p95_ms:>7.0f} {row.failures:>8}"
        )
    if result.task_errors:
        lines.append(f"task errors: {len(result.task_errors)}")
        lines.extend(f"  {e}" for e in sorted(set(result.task_errors))[:10])
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """The services under load: their addresses, and the process ids of those
    started here (none for services running elsewhere)."""

    addresses: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def services(
    given: dict[str, str] | None = None, *, running: bool = False, data_dir: Path | None = None
) -> Iterator[Target]:
    """The services to load: at `given` addresses, those of `jangkau up` (`running`,
    from JANGKAU_*_ADDR), or audience, metrics and budget started here on free
    loopback ports (in `data_dir`, else a temporary folder) and stopped on exit."""
    if given:
        missing = sorted(set(DEFAULT_SERVICES) - set(given))
        if missing:
            raise SystemExit(f"no address for {', '.join(missing)}")
        yield Target(dict(given))
        return
    if running:
        settings = Settings.from_env()
        yield Target(
            {
                "audience": settings.audience_addr,
                "budget": settings.budget_addr,
                "metrics": settings.metrics_addr,
            }
        )
        return
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="jangkau-load-"))
            )
        cluster = Cluster(
            data_dir, DEFAULT_SERVICES, free_ports=True, extra_env={"JANGKAU_GRACE_SECONDS": "2"}
        )
        stack.enter_context(cluster)
        addresses = {name: cluster.addresses[name] for name in DEFAULT_SERVICES}
        print(f"services on {', '.join(f'{n}={a}' for n, a in addresses.items())}", flush=True)
        yield Target(addresses, {name: cluster.processes[name].pid for name in DEFAULT_SERVICES})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (60)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (20)")
    parser.add_argument("--campaigns", type=int, default=2, help="campaigns to create (2)")
    for name in DEFAULT_SERVICES:
        parser.add_argument(f"--{name}", metavar="HOST:PORT", help=f"a running {name} service")
    parser.add_argument(
        "--running", action="store_true", help="load the services at JANGKAU_*_ADDR"
    )
    parser.add_argument("--token", help="buyer token (default: the development token)")
    parser.add_argument("--feed-token", help="token of the platform feeds (default: --token)")
    parser.add_argument("--data-dir", help="data folder of the started services (kept)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.campaigns < 1:
        parser.error("--seconds and --campaigns must be positive")
    fixed = sum(u.fixed_count for u in USER_CLASSES)
    if args.users <= fixed:
        parser.error(f"--users: more than {fixed} (the feeds and the rebalancer), so buyers run")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    buyer_token = args.token or DEV_TOKEN
    feed_token = args.feed_token or (args.token or DEV_SERVICE_TOKEN)
    given = {n: getattr(args, n) for n in DEFAULT_SERVICES if getattr(args, n)}
    data_dir = Path(args.data_dir) if args.data_dir else None
    with services(given, running=args.running, data_dir=data_dir) as target:
        world = prepare(
            target.addresses,
            buyer_token=buyer_token,
            feed_token=feed_token,
            campaigns=args.campaigns,
        )
        print(f"{args.users} users for {args.seconds:.0f} s", flush=True)
        result = run_users(
            USER_CLASSES,
            users=args.users,
            seconds=args.seconds,
            setup=lambda environment: attach(environment, world),
        )
    print(format_table(result, [result.combined(READ_METHODS, "reads")]))
    print(f"load: requests={result.requests} rps={result.rps:.1f} failures={result.failures}")
    return 0 if result.requests > 0 and result.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
