"""Operators' commands: `serve`, `up`, `data seed`, `tune`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from jangkau.runtime.auth import DEV_TOKEN
from jangkau.runtime.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=["audience", "budget", "metrics", "sandbox"])
    serve.set_defaults(run=_serve)

    up = subparsers.add_parser(
        "up", help="start audience, metrics and budget as local processes until Ctrl-C"
    )
    up.add_argument("--with-sandbox", action="store_true", help="also start the sandbox market")
    up.set_defaults(run=_up)

    data = subparsers.add_parser("data", help="reference data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    seed = data_sub.add_parser("seed", help="build the population cells (deterministic)")
    seed.add_argument("--seed", type=int, default=None, help="random seed (default: the fixed one)")
    seed.add_argument("--districts", type=int, default=None, help="fewer districts, for tests")
    seed.set_defaults(run=_data_seed)

    tune = subparsers.add_parser("tune", help="tune the allocation policy with Optuna")
    tune.add_argument("--trials", type=int, default=40, help="trials to add (default 40)")
    tune.add_argument("--timeout", type=float, default=None, help="stop after N seconds")
    tune.add_argument(
        "--storage",
        type=Path,
        default=None,
        help="study file (default $JANGKAU_DATA_DIR/tuning.sqlite3); runs resume from it",
    )
    tune.add_argument(
        "--write-defaults", action="store_true", help="make the best settings the defaults"
    )
    tune.add_argument(
        "--scenario", action="append", default=None, help="only these scenarios (repeat)"
    )
    tune.add_argument("--seeds-per-scenario", type=int, default=2)
    tune.add_argument("--hours", type=int, default=None, help="shorter simulated campaigns")
    tune.set_defaults(run=_tune)


def _serve(args: argparse.Namespace) -> int:
    from jangkau.runtime.server import serve

    serve(args.service)
    return 0


def _up(args: argparse.Namespace) -> int:
    from jangkau.runtime.launcher import DEFAULT_SERVICES, Cluster

    settings = Settings.from_env()
    services = (*DEFAULT_SERVICES, "sandbox") if args.with_sandbox else DEFAULT_SERVICES
    cluster = Cluster(settings.data_dir, services)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"starting {', '.join(services)} (data in {settings.data_dir}) ...", flush=True)
    try:
        cluster.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in services:
        print(f"  {name:<9} {cluster.addresses[name]}  SERVING")
    print(f"development token: {DEV_TOKEN}")
    print(f"logs: {cluster.log_dir}   Ctrl-C stops everything.", flush=True)
    failed = False
    while not stop.wait(0.5):
        dead = cluster.dead()
        if dead:
            print(f"error: {', '.join(dead)} exited; stopping", file=sys.stderr)
            failed = True
            break
    cluster.stop(timeout=8.0)
    print("stopped", flush=True)
    return 1 if failed else 0


def _data_seed(args: argparse.Namespace) -> int:
    from jangkau.audience.population import seed

    settings = Settings.from_env()
    options: dict[str, int] = {}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.districts is not None:
        options["districts"] = args.districts
    try:
        cells = seed(settings.data_dir, **options)
    except Exception as exc:  # DuckDB refuses a file the running service holds
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"population cells: {cells} in {settings.data_dir}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from jangkau.budget.tuning import tune, write_defaults

    settings = Settings.from_env()
    storage = args.storage or settings.data_dir / "tuning.sqlite3"
    options: dict[str, object] = {"seeds_per_scenario": args.seeds_per_scenario}
    if args.scenario:
        options["scenarios"] = tuple(args.scenario)
    if args.hours:
        options["hours"] = args.hours
    best = tune(storage, args.trials, args.timeout, sys.stderr.isatty(), **options)
    print(f"best settings: {best}")
    if args.write_defaults:
        print(f"written to {write_defaults(best)}")
    return 0
