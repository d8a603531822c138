"""`jangkau rebalance`: one run of the hourly rebalancer."""

from __future__ import annotations

import argparse
import sys

from jangkau.cli.buyer import common_options, moment
from jangkau.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    emit_json,
    progress,
    table,
)
from jangkau.client import Jangkau
from jangkau.platforms.sandbox import UNREACHABLE
from jangkau.rebalancer.job import RebalanceOptions
from jangkau.rebalancer.store import LeaseHeld
from jangkau.rebalancer.wiring import build
from jangkau.runtime.auth import DEV_TOKEN, TokenBook
from jangkau.runtime.config import Settings
from jangkau.runtime.errors import Unauthenticated
from jangkau.runtime.money import money
from jangkau.runtime.times import utcnow


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rebalance",
        help="pull reports, rebalance and push budgets for every active campaign",
    )
    parser.add_argument("--campaign", default=None, help="only this campaign")
    parser.add_argument("--dry-run", action="store_true", help="compute, apply nothing")
    parser.add_argument("--at", type=moment, default=None, help="as-of time (default now)")
    parser.add_argument("--max-seconds", type=float, default=3000.0, help="run-time limit")
    parser.add_argument(
        "--min-edit-percent",
        type=float,
        default=10.0,
        help="leave budgets that would move less than this (default 10)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="for simulations that must come out the same: seed of the sandbox market of "
        "campaigns it opens, and of each decision with the campaign's name and the hour "
        "(default 0: budget derives each decision's seed from the campaign id)",
    )
    common_options(parser)
    parser.set_defaults(run=_rebalance)


def _rebalance(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    at = args.at or utcnow()
    token = args.token or settings.token or None
    with Jangkau.from_env(token=token, timeout=args.timeout) as client:
        tenant = _tenant(settings, token)
        try:
            rebalancer = build(settings, client, clock=lambda: at, seed=args.seed)
        except LeaseHeld as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        try:
            options = RebalanceOptions(
                at=at,
                campaign_id=args.campaign,
                dry_run=args.dry_run,
                max_run_seconds=args.max_seconds,
                min_edit_percent=args.min_edit_percent,
                tenant=tenant,
                seed=args.seed,
            )
            summary = rebalancer.run(options, progress=lambda items: progress(items, "rebalance"))
        finally:
            rebalancer.store.close()
    if args.json:
        emit_json(
            {
                "at": at.isoformat(),
                "failed": summary.failed,
                "not_reached": summary.not_reached,
                "campaigns": [
                    {
                        "campaign_id": c.campaign_id,
                        "outcome": c.outcome.value,
                        "message": c.message,
                        "reports_ingested": c.reports_ingested,
                        "edits": c.edits,
                        "refused": c.refused,
                        "allocated_micros": c.allocated_micros,
                        "arms": c.arms,
                    }
                    for c in summary.campaigns
                ],
            }
        )
    else:
        rows = [
            (
                c.campaign_id,
                c.outcome.value,
                c.reports_ingested,
                c.edits,
                money(c.allocated_micros),
                c.message,
            )
            for c in summary.campaigns
        ]
        print(
            table(
                ["campaign", "outcome", "reports", "edits", "allocated/h", "note"], rows, [2, 3, 4]
            )
        )
        for cid in summary.not_reached:
            print(f"{cid}: not reached before the run-time limit")
    unreachable = [c for c in summary.campaigns if c.message.startswith(UNREACHABLE)]
    if settings.platforms_file is None and unreachable:
        print(
            f"the sandbox market at {settings.sandbox_addr} did not answer: "
            "`jangkau up --with-sandbox` starts it with the services",
            file=sys.stderr,
        )
    return EXIT_FAILED if summary.failed else EXIT_OK


def _tenant(settings: Settings, token: str | None) -> str:
    """The token's tenant when this process can read the tokens file (it labels the
    rebalancer's state); campaign ids are unique across tenants either way."""
    try:
        book = TokenBook.load(settings.tokens_file)
        return book.authenticate(f"Bearer {token or DEV_TOKEN}").tenant
    except (Unauthenticated, SystemExit, ValueError):
        return ""
