"""The buyer's commands: campaign, audience, allocate, decisions, report, rebalance."""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import json_format

from jangkau.cli.output import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    CliError,
    emit_json,
    fail,
    rpc_error,
    table,
)
from jangkau.client import Jangkau
from jangkau.runtime.money import MICROS_PER_UNIT, money
from jangkau.runtime.times import from_timestamp, to_timestamp, utcnow
from jangkau.v1 import audience_pb2, budget_pb2, common_pb2, metrics_pb2

WIB = ZoneInfo("Asia/Jakarta")
PLATFORMS = {
    "meta": common_pb2.META,
    "google": common_pb2.GOOGLE,
    "x": common_pb2.X,
    "tiktok": common_pb2.TIKTOK,
}
KINDS = {
    "political": common_pb2.POLITICAL,
    "civic": common_pb2.CIVIC,
    "commercial": common_pb2.COMMERCIAL,
}
STATES = {"active": budget_pb2.ACTIVE, "paused": budget_pb2.PAUSED, "ended": budget_pb2.ENDED}
OBJECTIVES = {
    "conversions": budget_pb2.OBJECTIVE_CONVERSIONS,
    "clicks": budget_pb2.OBJECTIVE_CLICKS,
    "impressions": budget_pb2.OBJECTIVE_IMPRESSIONS,
}
PACINGS = {
    "even": budget_pb2.EVEN,
    "front-loaded": budget_pb2.FRONT_LOADED,
    "back-loaded": budget_pb2.BACK_LOADED,
}
GENDERS = {"male": audience_pb2.MALE, "female": audience_pb2.FEMALE}
LOCALITIES = {"urban": audience_pb2.URBAN, "rural": audience_pb2.RURAL}
BANDS = {
    "low": audience_pb2.CONNECTIVITY_LOW,
    "medium": audience_pb2.CONNECTIVITY_MEDIUM,
    "high": audience_pb2.CONNECTIVITY_HIGH,
}
CONSENTS = {
    "explicit": audience_pb2.EXPLICIT_CONSENT,
    "contract": audience_pb2.CONTRACT,
    "legitimate-interest": audience_pb2.LEGITIMATE_INTEREST,
}


def platform_name(value: int) -> str:
    return common_pb2.Platform.Name(value).lower()


def choice(mapping: dict[str, int], field: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        key = text.strip().lower()
        if key not in mapping:
            raise argparse.ArgumentTypeError(f"{field}: one of {', '.join(mapping)}")
        return mapping[key]

    parse.__name__ = field
    return parse


def moment(text: str) -> datetime:
    """ISO time; a date or a time without a zone is read in WIB."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=WIB)


def units_to_micros(text: str) -> int:
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    return round(value * 1_000_000)


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--token", default=None, help="bearer token (default $JANGKAU_TOKEN)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")


def command(func: Callable[[argparse.Namespace, Jangkau], int | None]):
    """Runs a buyer command with a client; errors become one line and an exit code."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            with Jangkau.from_env(token=args.token, timeout=args.timeout) as jk:
                return func(args, jk) or EXIT_OK
        except grpc.RpcError as exc:
            return fail(rpc_error(exc))
        except CliError as exc:
            return fail(exc)

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_campaign(subparsers)
    _register_audience(subparsers)

    allocate = subparsers.add_parser("allocate", help="compute the next split (dry run)")
    allocate.add_argument("campaign_id")
    allocate.add_argument("--at", type=moment, default=None, help="as-of time (default now)")
    allocate.add_argument("--seed", type=int, default=0)
    common_options(allocate)
    allocate.set_defaults(run=command(_allocate))

    decisions = subparsers.add_parser("decisions", help="the decision log, with why")
    decisions.add_argument("campaign_id")
    decisions.add_argument("--limit", type=int, default=5, help="newest N decisions")
    common_options(decisions)
    decisions.set_defaults(run=command(_decisions))

    report = subparsers.add_parser("report", help="performance by platform, audience or arm")
    report.add_argument("campaign_id")
    report.add_argument("--by", choices=["platform", "audience", "arm"], default="platform")
    report.add_argument("--at", type=moment, default=None, help="as-of time (default now)")
    common_options(report)
    report.set_defaults(run=command(_report))


def _register_campaign(subparsers: argparse._SubParsersAction) -> None:
    campaign = subparsers.add_parser("campaign", help="create, list, show, update campaigns")
    sub = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="create a campaign")
    create.add_argument("--file", type=Path, help="campaign as JSON (the v1 Campaign message)")
    create.add_argument("--name")
    create.add_argument("--kind", type=choice(KINDS, "kind"))
    create.add_argument("--currency", default=None)
    create.add_argument("--budget", type=units_to_micros, help="total, in currency units")
    create.add_argument("--start", type=moment, help="flight start (dates are WIB)")
    create.add_argument("--end", type=moment, help="flight end, exclusive")
    create.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="ID:PLATFORM:AUDIENCE",
        help="an arm (repeat); platform meta|google|x|tiktok",
    )
    create.add_argument(
        "--authorized", action="store_true", help="holds political-ad authorisation"
    )
    create.add_argument("--objective", type=choice(OBJECTIVES, "objective"))
    create.add_argument("--pacing", type=choice(PACINGS, "pacing"))
    create.add_argument("--max-change", type=float, help="max change per rebalance, percent")
    common_options(create)
    create.set_defaults(run=command(_campaign_create))

    listing = sub.add_parser("list", help="list campaigns")
    listing.add_argument("--state", type=choice(STATES, "state"), default=0)
    common_options(listing)
    listing.set_defaults(run=command(_campaign_list))

    show = sub.add_parser("show", help="one campaign")
    show.add_argument("campaign_id")
    common_options(show)
    show.set_defaults(run=command(_campaign_show))

    update = sub.add_parser("update", help="change a campaign")
    update.add_argument("campaign_id")
    update.add_argument("--name")
    update.add_argument("--budget", type=units_to_micros, help="total, in currency units")
    update.add_argument("--state", type=choice(STATES, "state"))
    update.add_argument("--end", type=moment, help="new flight end")
    update.add_argument("--max-change", type=float)
    common_options(update)
    update.set_defaults(run=command(_campaign_update))


def _register_audience(subparsers: argparse._SubParsersAction) -> None:
    audience = subparsers.add_parser("audience", help="create, size, overlap, export audiences")
    sub = audience.add_subparsers(dest="audience_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="an audience: the AND of the conditions given")
    create.add_argument("--name", required=True)
    create.add_argument("--rule-file", type=Path, help="rule as JSON (the v1 Rule message)")
    create.add_argument(
        "--region",
        action="append",
        default=[],
        help="Kemendagri code (prefix), or a province or kabupaten/kota by name",
    )
    create.add_argument("--age", help="MIN-MAX years")
    create.add_argument("--gender", type=choice(GENDERS, "gender"))
    create.add_argument("--locality", type=choice(LOCALITIES, "locality"))
    create.add_argument("--connectivity", type=choice(BANDS, "connectivity"), action="append")
    create.add_argument("--list", dest="lists", action="append", default=[], help="contact list id")
    create.add_argument("--exclude", action="append", default=[], help="audience id to exclude")
    common_options(create)
    create.set_defaults(run=command(_audience_create))

    listing = sub.add_parser("list", help="list audiences")
    common_options(listing)
    listing.set_defaults(run=command(_audience_list))

    size = sub.add_parser("size", help="voters and reach per platform")
    size.add_argument("audience_id")
    size.add_argument("--kind", type=choice(KINDS, "kind"), default=0)
    size.add_argument(
        "--by-regency", action="store_true", help="also the part in each kabupaten/kota"
    )
    common_options(size)
    size.set_defaults(run=command(_audience_size))

    overlap = sub.add_parser("overlap", help="shared voters between audiences")
    overlap.add_argument("audience_ids", nargs="+")
    common_options(overlap)
    overlap.set_defaults(run=command(_audience_overlap))

    export = sub.add_parser("export", help="hashed upload file for a platform (CSV)")
    export.add_argument("audience_id")
    export.add_argument("--platform", type=choice(PLATFORMS, "platform"), required=True)
    export.add_argument("--out", type=Path, help="file to write (default stdout)")
    common_options(export)
    export.set_defaults(run=command(_audience_export))

    regions = sub.add_parser(
        "regions", help="kabupaten/kota codes for --region, found by name, province or code"
    )
    regions.add_argument(
        "query", nargs="*", help="words of the name or its province, or a code (prefix)"
    )
    regions.add_argument("--json", action="store_true", help="machine-readable output")
    regions.set_defaults(run=_audience_regions)

    upload = sub.add_parser("upload-list", help="upload a contact list (only hashes are kept)")
    upload.add_argument("--name", required=True)
    upload.add_argument("--purpose", required=True)
    upload.add_argument("--consent", type=choice(CONSENTS, "consent"), required=True)
    upload.add_argument("--file", type=Path, required=True, help="CSV with phone and/or email")
    upload.add_argument(
        "--region",
        action="append",
        default=[],
        help="where the list's people live (repeat): Kemendagri code, or a province or "
        "kabupaten/kota by name (default nationwide)",
    )
    upload.add_argument(
        "--country",
        default=None,
        help="ISO 3166 country of phone numbers written without a country code (default ID)",
    )
    common_options(upload)
    upload.set_defaults(run=command(_audience_upload))


# campaign


def _arm(text: str, index: int) -> budget_pb2.Arm:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise CliError(f"--arm[{index}]: expected ID:PLATFORM:AUDIENCE[:CREATIVE], got {text!r}")
    platform = PLATFORMS.get(parts[1].lower())
    if platform is None:
        raise CliError(f"--arm[{index}].platform: one of {', '.join(PLATFORMS)}")
    arm = budget_pb2.Arm(id=parts[0], platform=platform, audience_id=parts[2])
    if len(parts) == 4:
        arm.creative = parts[3]
    return arm


def _campaign_create(args: argparse.Namespace, jk: Jangkau) -> int:
    campaign = budget_pb2.Campaign()
    if args.file:
        try:
            json_format.Parse(args.file.read_text(), campaign)
        except (OSError, json_format.ParseError) as exc:
            raise CliError(f"--file: {exc}") from None
    if args.name:
        campaign.name = args.name
    if args.kind:
        campaign.kind = args.kind
    if args.currency:
        campaign.currency = args.currency
    if args.budget is not None:
        campaign.total_budget_micros = args.budget
    if args.start:
        campaign.flight.start.CopyFrom(to_timestamp(args.start))
    if args.end:
        campaign.flight.end.CopyFrom(to_timestamp(args.end))
    campaign.arms.extend(_arm(text, i) for i, text in enumerate(args.arm))
    if args.authorized:
        campaign.political_authorization = True
    if args.objective:
        campaign.objective = args.objective
    if args.pacing:
        campaign.pacing.mode = args.pacing
    if args.max_change is not None:
        campaign.policy.max_change_percent = args.max_change
    created = jk.budget.create_campaign(campaign)
    if args.json:
        emit_json(created)
    else:
        print(created.id)
    return EXIT_OK


def _campaign_rows(campaigns: list[budget_pb2.Campaign]) -> str:
    rows = [
        (
            c.id,
            c.name,
            common_pb2.CampaignKind.Name(c.kind).lower(),
            budget_pb2.CampaignState.Name(c.state).lower(),
            money(c.total_budget_micros, c.currency),
            from_timestamp(c.flight.start).astimezone(WIB).date(),
            from_timestamp(c.flight.end).astimezone(WIB).date(),
            len(c.arms),
        )
        for c in campaigns
    ]
    return table(["id", "name", "kind", "state", "budget", "start", "end", "arms"], rows, [4, 7])


def _campaign_list(args: argparse.Namespace, jk: Jangkau) -> int:
    campaigns = list(jk.budget.list_campaigns(state=args.state))
    if args.json:
        emit_json(campaigns)
    else:
        print(_campaign_rows(campaigns) if campaigns else "no campaigns")
    return EXIT_OK


def _campaign_show(args: argparse.Namespace, jk: Jangkau) -> int:
    c = jk.budget.get_campaign(args.campaign_id)
    if args.json:
        emit_json(c)
        return EXIT_OK
    print(_campaign_rows([c]))
    print()
    for w in c.blackouts:
        start = from_timestamp(w.range.start).astimezone(WIB)
        end = from_timestamp(w.range.end).astimezone(WIB)
        print(f"blackout {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} WIB  {w.reason}")
    rows = [(a.id, platform_name(a.platform), a.audience_id, a.creative or "-") for a in c.arms]
    print(table(["arm", "platform", "audience", "creative"], rows))
    return EXIT_OK


def _campaign_update(args: argparse.Namespace, jk: Jangkau) -> int:
    campaign = budget_pb2.Campaign(id=args.campaign_id)
    paths = []
    if args.name:
        campaign.name = args.name
        paths.append("name")
    if args.budget is not None:
        campaign.total_budget_micros = args.budget
        paths.append("total_budget_micros")
    if args.state:
        campaign.state = args.state
        paths.append("state")
    if args.end:
        current = jk.budget.get_campaign(args.campaign_id)
        campaign.flight.CopyFrom(current.flight)
        campaign.flight.end.CopyFrom(to_timestamp(args.end))
        paths.append("flight")
    if args.max_change is not None:
        current = jk.budget.get_campaign(args.campaign_id)
        campaign.policy.CopyFrom(current.policy)
        campaign.policy.max_change_percent = args.max_change
        paths.append("policy")
    if not paths:
        raise CliError("nothing to update: give --name, --budget, --state, --end or --max-change")
    updated = jk.budget.update_campaign(campaign, paths)
    if args.json:
        emit_json(updated)
    else:
        print(f"{updated.id} revision {updated.revision}")
    return EXIT_OK


# audience


def _audience_create(args: argparse.Namespace, jk: Jangkau) -> int:
    rules: list[audience_pb2.Rule] = []
    if args.rule_file:
        rule = audience_pb2.Rule()
        try:
            json_format.Parse(args.rule_file.read_text(), rule)
        except (OSError, json_format.ParseError) as exc:
            raise CliError(f"--rule-file: {exc}") from None
        rules.append(rule)
    if args.region:
        codes = [region_code(value) for value in args.region]
        rules.append(audience_pb2.Rule(region=audience_pb2.RegionCondition(codes=codes)))
    if args.age:
        low, _, high = args.age.partition("-")
        if not (low.isdigit() and high.isdigit()):
            raise CliError(f"--age: expected MIN-MAX, got {args.age!r}")
        rules.append(audience_pb2.Rule(age=audience_pb2.AgeRange(min=int(low), max=int(high))))
    if args.gender:
        rules.append(audience_pb2.Rule(gender=audience_pb2.GenderCondition(genders=[args.gender])))
    if args.locality:
        rules.append(
            audience_pb2.Rule(locality=audience_pb2.LocalityCondition(locality=args.locality))
        )
    if args.connectivity:
        rules.append(
            audience_pb2.Rule(
                connectivity=audience_pb2.ConnectivityCondition(bands=args.connectivity)
            )
        )
    rules.extend(audience_pb2.Rule(contact_list_id=lst) for lst in args.lists)
    rules.extend(audience_pb2.Rule(exclude_audience_id=aud) for aud in args.exclude)
    if not rules:
        raise CliError(
            "give at least one condition (--region, --age, --gender, ... or --rule-file)"
        )
    rule = (
        rules[0] if len(rules) == 1 else audience_pb2.Rule(all=audience_pb2.RuleList(rules=rules))
    )
    created = jk.audience.create_audience(args.name, rule)
    if args.json:
        emit_json(created)
    else:
        print(created.id)
    return EXIT_OK


def _audience_list(args: argparse.Namespace, jk: Jangkau) -> int:
    audiences = list(jk.audience.list_audiences())
    if args.json:
        emit_json(audiences)
        return EXIT_OK
    rows = [(a.id, a.name, "yes" if a.uses_contact_lists else "no") for a in audiences]
    print(table(["id", "name", "contact lists"], rows) if rows else "no audiences")
    return EXIT_OK


# Province names as KPU and everyday use write them (the reference data has
# Kemendagri's "Daerah Khusus Ibukota Jakarta", "Daerah Istimewa Yogyakarta").
REGION_ALIASES = {"dki jakarta": "31", "di yogyakarta": "34", "diy": "34"}


@functools.cache
def _places() -> tuple[tuple[str, str], ...]:
    """(code, name) of every province, then every kabupaten/kota (read once)."""
    from jangkau.audience.population import load_provinces, regency_names

    provinces = [(str(p.code), p.name) for p in load_provinces()]
    return (*provinces, *((str(code), name) for code, name in regency_names().items()))


def region_code(value: str) -> str:
    """A --region value: a code as given (the service checks it), or the code of the
    province or kabupaten/kota of that name, or of the one place whose name holds it."""
    if value.isdigit():
        return value
    wanted = " ".join(value.lower().split())
    if wanted in REGION_ALIASES:
        return REGION_ALIASES[wanted]
    places = _places()
    found = [c for c, n in places if n.lower() == wanted]
    found = found or [c for c, n in places if wanted in n.lower()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(
            f"--region: no province or kabupaten/kota is named {value!r} "
            "(`jangkau audience regions WORDS` finds codes)"
        )
    names = dict(places)
    listed = ", ".join(f"{c} {names[c]}" for c in found[:6]) + (", ..." if len(found) > 6 else "")
    raise CliError(
        f"--region: {value!r} fits {len(found)} places ({listed}); give a code or a full name"
    )


def _audience_regions(args: argparse.Namespace) -> int:
    """The reference data shipped with jangkau, no service needed: every word must
    match (a code matches its kabupaten/kota, a prefix every code under it)."""
    from jangkau.audience.population import load_provinces, load_regencies

    provinces = {p.code: p.name for p in load_provinces()}
    words = [w.lower() for w in args.query]

    def matches(code: str, text: str) -> bool:
        return all(
            (code.startswith(w) or w.startswith(code)) if w.isdigit() else w in text for w in words
        )

    found = [
        r
        for r in load_regencies()
        if matches(str(r.code), f"{r.name} {provinces[r.province]}".lower())
    ]
    if args.json:
        emit_json(
            [
                {
                    "code": str(r.code),
                    "name": r.name,
                    "province": str(r.province),
                    "province_name": provinces[r.province],
                    "population": r.population,
                }
                for r in found
            ]
        )
    elif found:
        rows = [
            (r.code, r.name, f"{r.province} {provinces[r.province]}", f"{r.population:,}")
            for r in found
        ]
        print(table(["code", "kabupaten/kota", "province", "population"], rows, right=[3]))
    else:
        print(f"no kabupaten/kota matches {' '.join(args.query)!r}", file=sys.stderr)
    return EXIT_OK if found else EXIT_NOT_FOUND


def _audience_size(args: argparse.Namespace, jk: Jangkau) -> int:
    reply = jk.audience.estimate_size(
        args.audience_id, campaign_kind=args.kind, by_regency=args.by_regency
    )
    if args.json:
        emit_json(reply)
        return EXIT_OK
    print(f"voters: {reply.voters:,}")
    rows = [
        (
            platform_name(p.platform),
            f"{p.reachable:,}",
            "yes" if p.targetable else "no",
            "yes" if p.allowed else "no",
            p.reason or "",
        )
        for p in reply.platforms
    ]
    print(table(["platform", "reachable", "targetable", "allowed", "why"], rows, [1]))
    if args.by_regency:
        # Reach per platform in each part; "*" where that part alone is under the
        # platform's minimum audience.
        names = [platform_name(p.platform) for p in reply.platforms]
        parts = [
            (
                r.code,
                r.name,
                f"{r.voters:,}",
                *(f"{p.reachable:,}{'' if p.targetable else '*'}" for p in r.platforms),
            )
            for r in reply.regencies
        ]
        right = range(2, 3 + len(names))
        print()
        print(table(["code", "kabupaten/kota", "voters", *names], parts, right))
        if any(not p.targetable for r in reply.regencies for p in r.platforms):
            print("* under the platform's minimum audience on its own")
    return EXIT_OK


def _audience_overlap(args: argparse.Namespace, jk: Jangkau) -> int:
    reply = jk.audience.overlap(args.audience_ids)
    if args.json:
        emit_json(reply)
        return EXIT_OK
    n = len(reply.audience_ids)
    rows = []
    for i, aud in enumerate(reply.audience_ids):
        own = reply.voters[i] or 1
        rows.append(
            [aud, f"{reply.voters[i]:,}"]
            + [f"{100 * reply.shared_voters[i * n + j] / own:.0f}%" for j in range(n)]
        )
    headers = ["audience", "voters", *[f"#{j + 1}" for j in range(n)]]
    print(table(headers, rows, range(1, n + 2)))
    print("cell i,j: share of audience i's voters also in audience j")
    return EXIT_OK


def _audience_export(args: argparse.Namespace, jk: Jangkau) -> int:
    out = args.out.open("w", newline="") if args.out else sys.stdout
    written = 0
    try:
        writer = csv.writer(out)
        for chunk in jk.audience.export_audience(args.audience_id, args.platform):
            if chunk.chunk_index == 0:
                writer.writerow(chunk.schema)
            for record in chunk.records:
                writer.writerow(record.values)
            written += len(chunk.records)
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"{written} records written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _audience_upload(args: argparse.Namespace, jk: Jangkau) -> int:
    phones: list[str] = []
    emails: list[str] = []
    try:
        with args.file.open(newline="") as handle:
            for row in csv.DictReader(handle):
                lowered = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
                if lowered.get("phone"):
                    phones.append(lowered["phone"])
                if lowered.get("email"):
                    emails.append(lowered["email"])
    except OSError as exc:
        raise CliError(f"--file: {exc}") from None
    header = audience_pb2.ContactListHeader(
        name=args.name,
        purpose=args.purpose,
        consent_basis=args.consent,
        region_codes=[region_code(value) for value in args.region],
        default_country=(args.country or "").strip().upper(),
    )
    step = 50_000
    chunks = [
        audience_pb2.ContactChunk(phones=phones[i : i + step], emails=emails[i : i + step])
        for i in range(0, max(len(phones), len(emails)), step)
    ]
    created = jk.audience.upload_contact_list(header, chunks)
    if args.json:
        emit_json(created)
    else:
        rejected = sum(created.rejected.values())
        print(f"{created.id}: {created.accepted} stored as hashes, {rejected} rejected")
        for reason, count in sorted(created.rejected.items()):
            print(f"  {count:>8}  {reason}")
    return EXIT_OK


# allocation


def _allocation_rows(allocation: budget_pb2.Allocation) -> str:
    # The marginal return per a sum a buyer thinks in (the API gives it per unit).
    per_units = 1_000_000 if allocation.currency == "IDR" else 1_000
    per = money(per_units * MICROS_PER_UNIT, allocation.currency)
    rows = [
        (
            a.arm_id,
            platform_name(a.platform),
            money(a.budget_micros, allocation.currency),
            f"{a.expected:.1f} [{a.expected_low:.1f}–{a.expected_high:.1f}]",
            f"{a.marginal_return * per_units:.3g}",
            budget_pb2.Bound.Name(a.bound).removeprefix("BOUND_").lower(),
            a.reason,
        )
        for a in allocation.arms
    ]
    headers = ["arm", "platform", "budget", "expected [90%]", f"marginal per {per}", "bound", "why"]
    return table(headers, rows, [2, 4])


def _allocate(args: argparse.Namespace, jk: Jangkau) -> int:
    allocation = jk.budget.allocate(args.campaign_id, as_of=args.at, seed=args.seed)
    if args.json:
        emit_json(allocation)
        return EXIT_OK
    start = from_timestamp(allocation.period.start).astimezone(WIB)
    print(
        f"period {start:%Y-%m-%d %H:%M} WIB  budget "
        f"{money(allocation.period_budget_micros, allocation.currency)}  allocated "
        f"{money(allocation.allocated_micros, allocation.currency)}  (dry run: nothing recorded)"
    )
    print(_allocation_rows(allocation))
    return EXIT_OK


def _decisions(args: argparse.Namespace, jk: Jangkau) -> int:
    decisions = []
    for decision in jk.budget.list_decisions(args.campaign_id):
        decisions.append(decision)
        if len(decisions) >= args.limit:
            break
    if args.json:
        emit_json(decisions)
        return EXIT_OK
    if not decisions:
        print("no decisions")
    for d in decisions:
        a = d.allocation
        start = from_timestamp(a.period.start).astimezone(WIB)
        print(
            f"{d.id}  period {start:%Y-%m-%d %H:%M} WIB  "
            f"allocated {money(a.allocated_micros, a.currency)} of "
            f"{money(a.period_budget_micros, a.currency)}"
        )
        print(_allocation_rows(a))
        print()
    return EXIT_OK


def _report(args: argparse.Namespace, jk: Jangkau) -> int:
    as_of = args.at or utcnow()
    summary = jk.metrics.summary(args.campaign_id, as_of=as_of)
    group = {
        "platform": metrics_pb2.BY_PLATFORM,
        "audience": metrics_pb2.BY_AUDIENCE,
        "arm": metrics_pb2.BY_ARM,
    }[args.by]
    campaign = jk.budget.get_campaign(args.campaign_id)
    start = from_timestamp(campaign.flight.start)
    end = min(as_of, from_timestamp(campaign.flight.end))
    wanted = [metrics_pb2.METRIC_SPEND, metrics_pb2.METRIC_CONVERSIONS]
    series = jk.metrics.timeseries(
        args.campaign_id,
        start,
        max(end, start + timedelta(hours=1)),
        wanted,
        group,
        metrics_pb2.DAILY,
    )
    total_spend = max(summary.spend_micros, 1)
    rows = []
    payload = []
    for s in series.series:
        spend = sum(p.values[0] for p in s.points)
        conversions = sum(p.values[1] for p in s.points)
        last = [p.values[1] for p in s.points[-7:]]
        prior = [p.values[1] for p in s.points[-14:-7]]
        trend = (sum(last) - sum(prior)) / sum(prior) * 100 if sum(prior) else 0.0
        cpa = spend / conversions if conversions else 0.0
        key = s.key.lower() if args.by == "platform" else s.key
        rows.append(
            (
                key,
                money(spend, summary.currency),
                f"{conversions:,.0f}",
                money(cpa, summary.currency) if conversions else "-",
                f"{100 * spend / total_spend:.1f}%",
                f"{trend:+.0f}%",
            )
        )
        payload.append(
            {
                "key": key,
                "spend_micros": spend,
                "conversions": conversions,
                "cpa_micros": cpa,
                "share": spend / total_spend,
                "trend_7d_percent": trend,
            }
        )
    if args.json:
        emit_json({"summary": json_format.MessageToDict(summary), args.by: payload})
        return EXIT_OK
    print(
        f"spend {money(summary.spend_micros, summary.currency)} of "
        f"{money(summary.total_budget_micros, summary.currency)}  "
        f"pacing {summary.pacing_ratio:.2f}  conversions {summary.conversions:,.0f}"
    )
    print(
        table([args.by, "spend", "conversions", "CPA", "share", "trend 7d"], rows, [1, 2, 3, 4, 5])
    )
    return EXIT_OK
