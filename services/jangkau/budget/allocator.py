"""Allocate and Rebalance across process boundaries: reads fresh metrics (and, at
campaign create/update, the audiences), builds the policy's ArmSpec/Evidence from
them through the domain, and maps between `jangkau.v1` budget messages and the
domain (campaigns, allocations, decisions) for the edge and the decision log."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from jangkau.budget import domain
from jangkau.budget import policy as policy_module
from jangkau.budget.domain import (
    AllocationOutcome,
    Arm,
    AudienceFacts,
    BlackoutWindow,
    Bound,
    Campaign,
    CampaignKind,
    CampaignPlan,
    CampaignState,
    CoverageFloor,
    MetricsSnapshot,
    Objective,
    Pacing,
    PacingMode,
    Platform,
    PlatformMinimum,
    PlatformReach,
    PolicyOverrides,
    PreviousDecision,
)
from jangkau.budget.policy import KAPPA_GRID_MICROS, Evidence, Infeasible, PolicySettings
from jangkau.budget.store import BudgetStore, StoredDecision
from jangkau.budget.watch import DataVersionWatches, TenantWatch
from jangkau.runtime.auth import caller_if_any
from jangkau.runtime.cache import Memo
from jangkau.runtime.errors import (
    FailedPrecondition,
    NotFound,
    Unavailable,
    Violations,
)
from jangkau.runtime.ids import new_id
from jangkau.runtime.telemetry import instruments, tracer
from jangkau.runtime.times import floor_hour, from_timestamp, to_timestamp, to_us, utcnow
from jangkau.v1 import (
    audience_pb2,
    audience_pb2_grpc,
    budget_pb2,
    common_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
)

# ------------------------------------------------------------------ enum tables

log = logging.getLogger("jangkau.budget")

PLATFORM_TO_WIRE = {p: common_pb2.Platform.Value(p.value) for p in Platform}
PLATFORM_FROM_WIRE = {v: k for k, v in PLATFORM_TO_WIRE.items()}
KIND_TO_WIRE = {k: common_pb2.CampaignKind.Value(k.value) for k in CampaignKind}
KIND_FROM_WIRE = {v: k for k, v in KIND_TO_WIRE.items()}
OBJECTIVE_TO_WIRE = {o: budget_pb2.Objective.Value("OBJECTIVE_" + o.value) for o in Objective}
OBJECTIVE_FROM_WIRE = {v: k for k, v in OBJECTIVE_TO_WIRE.items()}
PACING_TO_WIRE = {m: budget_pb2.PacingMode.Value(m.value) for m in PacingMode}
PACING_FROM_WIRE = {v: k for k, v in PACING_TO_WIRE.items()}
STATE_TO_WIRE = {s: budget_pb2.CampaignState.Value(s.value) for s in CampaignState}
STATE_FROM_WIRE = {v: k for k, v in STATE_TO_WIRE.items()}
BOUND_TO_WIRE = {b: budget_pb2.Bound.Value("BOUND_" + b.value) for b in Bound}
BOUND_FROM_WIRE = {v: k for k, v in BOUND_TO_WIRE.items()}
COUNT_METRIC = {
    Objective.CONVERSIONS: metrics_pb2.COUNT_CONVERSIONS,
    Objective.CLICKS: metrics_pb2.COUNT_CLICKS,
    Objective.IMPRESSIONS: metrics_pb2.COUNT_IMPRESSIONS,
}

# Metrics answers that mean "try again later" rather than "your request is wrong".
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def _peer_error(service: str, method: str, exc: grpc.RpcError) -> Exception:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    text = f"{service} {method}: {code.name}: {details}"
    if code in _TRANSIENT:
        return Unavailable(f"{service} service unavailable ({text})")
    return FailedPrecondition(f"{service} refused the call ({text})")


# ------------------------------------------------------------------- campaign codec


def _time(ts, present: bool, field: str, v: Violations) -> datetime | None:  # type: ignore[no-untyped-def]
    if not present:
        v.add(field, "required")
        return None
    try:
        return from_timestamp(ts)
    except (ValueError, OverflowError):
        v.add(field, "not a valid time")
        return None


def campaign_from_wire(msg: budget_pb2.Campaign, tenant: str, prefix: str = "campaign") -> Campaign:
    """The domain campaign a message describes, with defaults applied. Raises
    InvalidArgument for what the wire form alone gets wrong (unset required fields,
    unknown enum values); `domain.validate_campaign` checks the rest."""
    v = Violations()
    p = prefix
    kind = KIND_FROM_WIRE.get(msg.kind)
    if kind is None:
        v.add(f"{p}.kind", "required: POLITICAL, CIVIC or COMMERCIAL")
    start = end = None
    if not msg.HasField("flight"):
        v.add(f"{p}.flight", "required")
    else:
        start = _time(msg.flight.start, msg.flight.HasField("start"), f"{p}.flight.start", v)
        end = _time(msg.flight.end, msg.flight.HasField("end"), f"{p}.flight.end", v)
    blackouts = []
    for i, w in enumerate(msg.blackouts):
        where = f"{p}.blackouts[{i}].range"
        if not w.HasField("range"):
            v.add(where, "required")
            continue
        b_start = _time(w.range.start, w.range.HasField("start"), f"{where}.start", v)
        b_end = _time(w.range.end, w.range.HasField("end"), f"{where}.end", v)
        if b_start and b_end:
            blackouts.append(BlackoutWindow(b_start, b_end, w.reason))
    arms = []
    for i, a in enumerate(msg.arms):
        platform = PLATFORM_FROM_WIRE.get(a.platform)
        if platform is None:
            v.add(f"{p}.arms[{i}].platform", "required: META, GOOGLE, X or TIKTOK")
            continue
        arms.append(
            Arm(
                arm_id=a.id,
                platform=platform,
                audience_id=a.audience_id,
                creative=a.creative,
                min_micros_per_period=a.min_micros_per_period,
                max_micros_per_period=a.max_micros_per_period,
                value_weight=a.value_weight,
            )
        )
    minimums = []
    for i, m in enumerate(msg.platform_minimums):
        platform = PLATFORM_FROM_WIRE.get(m.platform)
        if platform is None:
            v.add(f"{p}.platform_minimums[{i}].platform", "required: META, GOOGLE, X or TIKTOK")
            continue
        minimums.append(PlatformMinimum(platform, m.min_daily_micros))
    objective = (
        Objective.CONVERSIONS
        if msg.objective == budget_pb2.OBJECTIVE_UNSPECIFIED
        else OBJECTIVE_FROM_WIRE.get(msg.objective)
    )
    if objective is None:
        v.add(f"{p}.objective", "unknown objective")
    mode = (
        PacingMode.EVEN
        if msg.pacing.mode == budget_pb2.PACING_MODE_UNSPECIFIED
        else PACING_FROM_WIRE.get(msg.pacing.mode)
    )
    if mode is None:
        v.add(f"{p}.pacing.mode", "unknown pacing mode")
    state = (
        CampaignState.ACTIVE
        if msg.state == budget_pb2.CAMPAIGN_STATE_UNSPECIFIED
        else STATE_FROM_WIRE.get(msg.state)
    )
    if state is None:
        v.add(f"{p}.state", "unknown state")
    v.raise_if_any()
    assert kind and start and end and objective and mode and state  # checked above
    return Campaign(
        campaign_id=msg.id,
        tenant=tenant,
        name=msg.name,
        kind=kind,
        currency=msg.currency or "IDR",
        total_budget_micros=msg.total_budget_micros,
        flight_start=start,
        flight_end=end,
        time_zone=msg.time_zone or "Asia/Jakarta",
        blackouts=tuple(blackouts),
        skip_default_blackouts=msg.skip_default_blackouts,
        arms=tuple(arms),
        platform_minimums=tuple(minimums),
        coverage_floors=tuple(
            CoverageFloor(f.name, tuple(f.arm_ids), f.min_share) for f in msg.coverage_floors
        ),
        objective=objective,
        pacing=Pacing(mode, tuple(msg.pacing.hourly_profile)),
        political_authorization=msg.political_authorization,
        policy=PolicyOverrides(
            msg.policy.prior_strength,
            msg.policy.discount,
            msg.policy.exploration_floor,
            msg.policy.max_change_percent,
        ),
        state=state,
        create_time=from_timestamp(msg.create_time) if msg.HasField("create_time") else None,
        update_time=from_timestamp(msg.update_time) if msg.HasField("update_time") else None,
        revision=msg.revision,
    )


def _range(start: datetime, end: datetime) -> common_pb2.TimeRange:
    return common_pb2.TimeRange(start=to_timestamp(start), end=to_timestamp(end))


def campaign_to_wire(c: Campaign) -> budget_pb2.Campaign:
    msg = budget_pb2.Campaign(
        id=c.campaign_id,
        name=c.name,
        kind=KIND_TO_WIRE[c.kind],
        currency=c.currency,
        total_budget_micros=c.total_budget_micros,
        flight=_range(c.flight_start, c.flight_end),
        time_zone=c.time_zone,
        blackouts=[
            budget_pb2.BlackoutWindow(range=_range(w.start, w.end), reason=w.reason)
            for w in c.blackouts
        ],
        skip_default_blackouts=c.skip_default_blackouts,
        arms=[
            budget_pb2.Arm(
                id=a.arm_id,
                platform=PLATFORM_TO_WIRE[a.platform],
                audience_id=a.audience_id,
                creative=a.creative,
                min_micros_per_period=a.min_micros_per_period,
                max_micros_per_period=a.max_micros_per_period,
                value_weight=a.value_weight,
            )
            for a in c.arms
        ],
        platform_minimums=[
            budget_pb2.PlatformMinimum(
                platform=PLATFORM_TO_WIRE[m.platform], min_daily_micros=m.min_daily_micros
            )
            for m in c.platform_minimums
        ],
        coverage_floors=[
            budget_pb2.CoverageFloor(name=f.name, arm_ids=f.arm_ids, min_share=f.min_share)
            for f in c.coverage_floors
        ],
        objective=OBJECTIVE_TO_WIRE[c.objective],
        pacing=budget_pb2.Pacing(
            mode=PACING_TO_WIRE[c.pacing.mode], hourly_profile=c.pacing.hourly_profile
        ),
        political_authorization=c.political_authorization,
        policy=budget_pb2.PolicySettings(
            prior_strength=c.policy.prior_strength,
            discount=c.policy.discount,
            exploration_floor=c.policy.exploration_floor,
            max_change_percent=c.policy.max_change_percent,
        ),
        state=STATE_TO_WIRE[c.state],
        revision=c.revision,
    )
    if c.create_time:
        msg.create_time.CopyFrom(to_timestamp(c.create_time))
    if c.update_time:
        msg.update_time.CopyFrom(to_timestamp(c.update_time))
    return msg


# ----------------------------------------------------------------- allocation codec


def allocation_to_wire(outcome: AllocationOutcome) -> budget_pb2.Allocation:
    s = outcome.settings
    msg = budget_pb2.Allocation(
        campaign_id=outcome.campaign_id,
        period=_range(outcome.period_start, outcome.period_end),
        period_budget_micros=outcome.period_budget_micros,
        allocated_micros=outcome.allocated_micros,
        remaining_budget_micros=outcome.remaining_budget_micros,
        seed=outcome.seed,
        policy=budget_pb2.PolicySettings(
            prior_strength=s.prior_strength,
            discount=s.discount,
            exploration_floor=s.exploration_floor,
            max_change_percent=s.max_change_percent,
        ),
        hours_observed=outcome.hours_observed,
        objective=OBJECTIVE_TO_WIRE[outcome.objective],
        currency=outcome.currency,
        spend_to_date_micros=outcome.spend_to_date_micros,
        reason=outcome.reason,
    )
    # add() in place is ~3x faster than building messages and extending (2,000 arms).
    add = msg.arms.add
    for a in outcome.arms:
        add(
            arm_id=a.arm_id,
            platform=PLATFORM_TO_WIRE[a.platform],
            audience_id=a.audience_id,
            budget_micros=a.budget_micros,
            expected=a.expected,
            expected_low=a.expected_low,
            expected_high=a.expected_high,
            marginal_return=a.marginal_return,
            posterior_sd=a.posterior_sd,
            bound=BOUND_TO_WIRE[a.bound],
            reason=a.reason,
            previous_budget_micros=a.previous_budget_micros,
        )
    return msg


def previous_from_wire(allocation: budget_pb2.Allocation) -> PreviousDecision:
    return PreviousDecision(
        budgets={a.arm_id: a.budget_micros for a in allocation.arms},
        bounds={a.arm_id: BOUND_FROM_WIRE.get(a.bound, Bound.OPTIMAL) for a in allocation.arms},
    )


def decision_to_wire(stored: StoredDecision, replayed: bool) -> budget_pb2.Decision:
    return budget_pb2.Decision(
        id=stored.decision_id,
        allocation=budget_pb2.Allocation.FromString(stored.body),
        create_time=to_timestamp(stored.create_time),
        replayed=replayed,
    )


# ------------------------------------------------------------------------ peers


@dataclass(frozen=True)
class _Kept:
    """A metrics snapshot kept for reuse: the data version it was read at, and the
    watch session whose lease ran when it was asked for (None: none ran)."""

    version: str
    snapshot: MetricsSnapshot
    session: int | None


class MetricsGateway:
    """The metrics service as the budget service uses it."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = metrics_pb2_grpc.MetricsServiceStub(channel)
        # Per request shape, the last snapshot with the metrics data version it was
        # built from, and the watch session it was read in (budget.watch). While that
        # session's lease runs and no change announced since touched its window, the
        # snapshot is reused as it is; otherwise its version is sent back as
        # `if_version_not`, so an unchanged window costs metrics one version lookup.
        self._snapshots: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._snapshots_lock = threading.Lock()
        # Per request shape, the GetArmStats call under way: a concurrent Allocate of
        # the same shape waits for its answer and reuses it if the watch allows (the
        # reuse rule above), instead of asking metrics the same question again.
        self._asking: dict[Hashable, threading.Event] = {}
        self.watches = DataVersionWatches(channel)
        self._arm_stats = channel.unary_unary(
            "/jangkau.v1.MetricsService/GetArmStats",
            request_serializer=metrics_pb2.GetArmStatsRequest.SerializeToString,
            response_deserializer=ARM_STATS_VIEW.FromString,
        )

    def register(self, c: Campaign) -> None:
        request = metrics_pb2.RegisterCampaignRequest(
            campaign_id=c.campaign_id,
            currency=c.currency,
            total_budget_micros=c.total_budget_micros,
            flight=_range(c.flight_start, c.flight_end),
            arms=[
                metrics_pb2.ArmRef(
                    arm_id=a.arm_id,
                    platform=PLATFORM_TO_WIRE[a.platform],
                    audience_id=a.audience_id,
                )
                for a in c.arms
            ],
            revision=c.revision,
        )
        try:
            self.stub.RegisterCampaign(request)
        except grpc.RpcError as exc:
            raise _peer_error("metrics", "RegisterCampaign", exc) from None

    def snapshot(
        self, c: Campaign, window: tuple[datetime, datetime] | None, discount: float
    ) -> tuple[str, MetricsSnapshot]:
        """Spend to date and the discounted curve statistics of every arm over
        `window`, with the metrics data version they were read at ("" when there
        was nothing to read). UNAVAILABLE when metrics cannot answer: never a
        made-up history. The snapshot of the same request is reused only when nothing
        written since it was read touched its window: as the data version watch
        guarantees under its lease, or else as metrics confirms (`if_version_not`).
        Under a lease, Allocates asking the same at once share one call."""
        n, kappas = len(c.arms), KAPPA_GRID_MICROS
        if window is None:
            return "", MetricsSnapshot(0, 0, Evidence.empty(n, kappas))
        # Everything the snapshot is a function of, besides the metrics data: the
        # campaign revision fixes the arms and their order, the rest is the request.
        key = (c.tenant, c.campaign_id, c.revision, window, discount, c.objective, kappas)
        end_us = to_us(window[1])
        watch = self.watches.of(caller_if_any())
        if watch is None:
            return self._ask(c, key, window, discount, None)
        kept = self._current(key, c.campaign_id, end_us, watch)
        if kept is not None:
            return kept.version, kept.snapshot
        with self._snapshots_lock:
            asking = self._asking.get(key)
            if asking is None:
                self._asking[key] = threading.Event()
        if asking is None:
            try:
                return self._ask(c, key, window, discount, watch)
            finally:
                with self._snapshots_lock:
                    self._asking.pop(key).set()
        # Another Allocate is asking the same: its answer, if the watch allows reuse.
        asking.wait(ASKING_WAIT_SECONDS)
        kept = self._current(key, c.campaign_id, end_us, watch)
        if kept is not None:
            return kept.version, kept.snapshot
        return self._ask(c, key, window, discount, watch)

    def _current(
        self, key: Hashable, campaign_id: str, end_us: int, watch: TenantWatch
    ) -> _Kept | None:
        """The kept snapshot of `key`, if the watch says it is still current."""
        with self._snapshots_lock:
            cached = self._snapshots.get(key)
        if cached is None or not watch.unchanged(
            cached.session, campaign_id, cached.version, end_us
        ):
            return None
        self._keep(key, cached)
        return cached

    def _ask(
        self,
        c: Campaign,
        key: Hashable,
        window: tuple[datetime, datetime],
        discount: float,
        watch: TenantWatch | None,
    ) -> tuple[str, MetricsSnapshot]:
        """Asks metrics for the snapshot of `key`, with the kept one's version as
        `if_version_not`, and keeps the answer."""
        kappas = KAPPA_GRID_MICROS
        with self._snapshots_lock:
            cached = self._snapshots.get(key)
        # Taken before asking: changes announced from now on are the answer's or later.
        session = watch.session() if watch is not None else None
        request = metrics_pb2.GetArmStatsRequest(
            campaign_id=c.campaign_id,
            window=_range(*window),
            discount=discount,
            kappas_micros=kappas,
            count_metric=COUNT_METRIC[c.objective],
            if_version_not=cached.version if cached else "",
        )
        try:
            response = self._arm_stats(request)
        except grpc.RpcError as exc:
            raise _peer_error("metrics", "GetArmStats", exc) from None
        if response.not_modified:
            if cached is None or response.data_version != cached.version:
                raise FailedPrecondition("metrics answered not_modified to an unasked version")
            self._keep(key, _Kept(cached.version, cached.snapshot, session))
            return cached.version, cached.snapshot
        snapshot = _snapshot_from(c, response)
        if response.data_version:
            self._keep(key, _Kept(response.data_version, snapshot, session))
        return response.data_version, snapshot

    def _keep(self, key: Hashable, kept: _Kept) -> None:
        with self._snapshots_lock:
            self._snapshots[key] = kept
            self._snapshots.move_to_end(key)
            while len(self._snapshots) > SNAPSHOT_CACHE_SIZE:
                self._snapshots.popitem(last=False)

    def close(self) -> None:
        """Stops the data version watches."""
        self.watches.close()


def _arm_stats_view() -> type[Message]:
    """GetArmStatsResponse as the allocator reads it: the same wire format, but each
    arm's `curves` entries arrive as raw bytes, so that 2,000 arms × 31 κ decode as
    one numpy buffer instead of 62,000 message objects (tens of milliseconds)."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="jangkau/budget/arm_stats_view.proto", package="jangkau.budget.view", syntax="proto3"
    )
    arm = file.message_type.add(name="ArmStatsView")
    for name, number, kind in (
        ("arm_id", 1, f.TYPE_STRING),
        ("spend_micros", 4, f.TYPE_INT64),
        ("discounted_conversions", 7, f.TYPE_DOUBLE),
        ("discounted_clicks", 9, f.TYPE_DOUBLE),
        ("discounted_impressions", 11, f.TYPE_DOUBLE),
        ("hours_observed", 12, f.TYPE_INT64),
        ("discounted_hours", 13, f.TYPE_DOUBLE),
    ):
        arm.field.add(name=name, number=number, type=kind, label=f.LABEL_OPTIONAL)
    arm.field.add(name="curves", number=17, type=f.TYPE_BYTES, label=f.LABEL_REPEATED)
    response = file.message_type.add(name="GetArmStatsResponseView")
    response.field.add(
        name="arms",
        number=1,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_REPEATED,
        type_name=".jangkau.budget.view.ArmStatsView",
    )
    response.field.add(name="data_version", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    response.field.add(name="not_modified", number=3, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("jangkau.budget.view.GetArmStatsResponseView")
    )


ARM_STATS_VIEW = _arm_stats_view()
# Request shapes whose latest metrics snapshot is kept (each ~1 MB at 2,000 arms).
SNAPSHOT_CACHE_SIZE = 64
# The longest an Allocate waits for another's GetArmStats call of the same shape
# before asking itself (that call's own deadline normally ends it first).
ASKING_WAIT_SECONDS = 10.0
# Arms of the allocation outcomes kept for repeated Allocates (a few KB an arm).
OUTCOME_CACHE_ARMS = 20_000
# A CurveStats entry on the wire is a run of (tag, double) pairs: its fields 1-3 are
# doubles (wire type 1, one-byte tags 0x09, 0x11, 0x19), written in field order and
# left out when zero. κ is never zero, so every entry starts with tag 0x09.
_CURVE_FIELD = np.dtype([("tag", "u1"), ("value", "<f8")])
_KAPPA_TAG = 0x09
_COUNTED = {
    Objective.CONVERSIONS: "discounted_conversions",
    Objective.CLICKS: "discounted_clicks",
    Objective.IMPRESSIONS: "discounted_impressions",
}


def _curves(reported, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(κ, exposure, log_shape), each (reported arms, k), from the raw curve entries in
    one numpy pass (2,000 arms × 31 κ as messages would cost tens of milliseconds)."""
    arms = len(reported)
    counts = np.fromiter((len(arm.curves) for arm in reported), np.int64, arms)
    if (counts != k).any():
        raise FailedPrecondition(f"metrics did not return {k} curve statistics for every arm")
    raw = b"".join(itertools.chain.from_iterable(arm.curves for arm in reported))
    if len(raw) % _CURVE_FIELD.itemsize:
        raise FailedPrecondition("metrics returned malformed curve statistics")
    pairs = np.frombuffer(raw, _CURVE_FIELD)
    tags = pairs["tag"]
    starts = tags == _KAPPA_TAG
    field = tags >> 3
    # Each entry: κ first, then its other fields in increasing order, none twice.
    ordered = (np.diff(field) > 0) | starts[1:]
    if (
        int(starts.sum()) != arms * k
        or (arms and not starts[0])
        or ((tags & 7) != 1).any()
        or (field > 3).any()
        or not ordered.all()
    ):
        raise FailedPrecondition("metrics returned malformed curve statistics")
    values = np.zeros((arms * k, 3))
    values[np.cumsum(starts) - 1, field - 1] = pairs["value"]
    by_arm = values.reshape(arms, k, 3)
    return by_arm[..., 0], by_arm[..., 1], by_arm[..., 2]


def _snapshot_from(c: Campaign, response) -> MetricsSnapshot:  # type: ignore[no-untyped-def]
    kappas = np.asarray(KAPPA_GRID_MICROS, dtype=float)
    n, k = len(c.arms), len(kappas)
    reported = response.arms
    # Every reported arm's spend counts against the budget, even one removed since.
    spend = sum(a.spend_micros for a in reported)
    index = {a.arm_id: i for i, a in enumerate(c.arms)}
    rows = np.array([index.get(a.arm_id, -1) for a in reported], dtype=np.int64)
    ours = rows >= 0
    seen = np.zeros(n, dtype=bool)
    seen[rows[ours]] = True
    if not seen.all():
        missing = [c.arms[i].arm_id for i in np.flatnonzero(~seen)[:5]]
        raise FailedPrecondition(
            f"metrics has not registered arms {', '.join(missing)} of campaign "
            f"{c.campaign_id}; update the campaign to register it again"
        )
    got_kappas, exposure, log_shape = _curves(reported, k)
    if len(reported) and not np.allclose(got_kappas, kappas[None, :], rtol=1e-9):
        raise FailedPrecondition("metrics returned curve statistics for other κ values")
    counted = _COUNTED[c.objective]
    evidence = Evidence(kappas, np.zeros((n, k)), np.zeros((n, k)), np.zeros(n), np.zeros(n))
    evidence.exposure[rows[ours]] = exposure[ours]
    evidence.log_shape[rows[ours]] = log_shape[ours]
    evidence.count[rows[ours]] = np.fromiter(
        (getattr(a, counted) for a in reported), float, len(reported)
    )[ours]
    evidence.hours[rows[ours]] = np.fromiter(
        (a.discounted_hours for a in reported), float, len(reported)
    )[ours]
    observed = max((a.hours_observed for a in reported), default=0)
    # The snapshot may be reused for later calls: nobody may change it in place.
    e = evidence
    for array in (e.kappas_micros, e.exposure, e.log_shape, e.count, e.hours):
        array.flags.writeable = False
    return MetricsSnapshot(int(spend), int(observed), evidence)


class AudienceGateway:
    """The audience service as the budget service uses it: facts for the cache."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = audience_pb2_grpc.AudienceServiceStub(channel)

    def facts(self, c: Campaign) -> dict[str, AudienceFacts]:
        """Facts of every audience the campaign's arms name that exists for the
        caller's tenant (a missing one is simply absent). Calls run concurrently."""
        platforms: dict[str, list[Platform]] = {}
        for arm in c.arms:
            if arm.audience_id:
                wanted = platforms.setdefault(arm.audience_id, [])
                if arm.platform not in wanted:
                    wanted.append(arm.platform)
        lookups = {
            a: self.stub.GetAudience.future(audience_pb2.GetAudienceRequest(audience_id=a))
            for a in platforms
        }
        found: dict[str, audience_pb2.Audience] = {}
        for audience_id, call in lookups.items():
            try:
                found[audience_id] = call.result()
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    continue
                raise _peer_error("audience", "GetAudience", exc) from None
        estimates = {
            a: self.stub.EstimateSize.future(
                audience_pb2.EstimateSizeRequest(
                    audience_id=a,
                    campaign_kind=KIND_TO_WIRE[c.kind],
                    platforms=[PLATFORM_TO_WIRE[p] for p in platforms[a]],
                )
            )
            for a in found
        }
        facts = {}
        for audience_id, call in estimates.items():
            try:
                estimate = call.result()
            except grpc.RpcError as exc:
                raise _peer_error("audience", "EstimateSize", exc) from None
            audience = found[audience_id]
            facts[audience_id] = AudienceFacts(
                audience_id=audience_id,
                uses_contact_lists=audience.uses_contact_lists,
                demographic_only=audience.demographic_only,
                voters=estimate.voters,
                reach=tuple(
                    PlatformReach(
                        PLATFORM_FROM_WIRE[e.platform],
                        e.reachable,
                        e.targetable,
                        e.allowed,
                        e.reason,
                    )
                    for e in estimate.platforms
                    if e.platform in PLATFORM_FROM_WIRE
                ),
            )
        return facts


# --------------------------------------------------------------------- allocator


@dataclass(frozen=True)
class Recorded:
    decision: StoredDecision
    replayed: bool


class Allocator:
    """Allocate (no side effects) and Rebalance (Allocate + record, idempotent per
    campaign and period) for the caller's tenant.

    Kept in memory, each a pure function of immutable rows: a campaign revision's
    plan, a recorded decision's budgets, and the arms as the policy sees them after
    that decision. Metrics are asked on every call; an unchanged campaign's answer
    is a version check that keeps the snapshot read before (see MetricsGateway)."""

    def __init__(
        self,
        store: BudgetStore,
        metrics: MetricsGateway,
        policy: domain.PolicyFunction | None = None,
        settings: Callable[[], PolicySettings] = policy_module.default_settings,
        clock: Callable[[], datetime] = utcnow,
        audiences: AudienceGateway | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        # Where a rebalance reads the audiences as they are now; None: as stored.
        self.audiences = audiences
        self._policy = policy
        self._settings = settings
        self._clock = clock
        self._plans: Memo[CampaignPlan] = Memo(64)
        self._previous: Memo[PreviousDecision] = Memo(256)
        self._specs: Memo[Any] = Memo(64)
        # Outcomes are deterministic (the seed is the request's or derived from the
        # campaign and period): an Allocate of unchanged inputs is answered again.
        # Counted in arms, as their size follows the campaign's.
        self._outcomes: Memo[AllocationOutcome] = Memo(
            OUTCOME_CACHE_ARMS, lambda outcome: len(outcome.arms) + 1
        )

    def policy(self) -> domain.PolicyFunction:
        return self._policy or policy_module.allocate

    def _plan(self, tenant: str, campaign_id: str, version: tuple[int, int]) -> CampaignPlan:
        """The plan of the campaign at `version`: its revision and its facts refresh."""

        def build() -> CampaignPlan:
            stored = self.store.get_campaign(tenant, campaign_id)
            if stored is None:
                raise NotFound(f"campaign {campaign_id} not found")
            campaign = campaign_from_wire(budget_pb2.Campaign.FromString(stored.body), tenant)
            facts = self.store.audience_facts(tenant, campaign_id)
            return domain.plan_campaign(campaign, facts)

        return self._plans.get((tenant, campaign_id, version), build)[0]

    def _previous_decision(
        self, tenant: str, campaign_id: str, decision_id: str
    ) -> PreviousDecision:
        def load() -> PreviousDecision:
            stored = self.store.decision(tenant, campaign_id, decision_id)
            if stored is None:
                raise NotFound(f"decision {decision_id} not found")
            return previous_from_wire(budget_pb2.Allocation.FromString(stored.body))

        return self._previous.get((tenant, decision_id), load)[0]

    def period_of(self, as_of: datetime | None) -> datetime:
        return floor_hour(as_of or self._clock())

    def allocate(
        self, tenant: str, campaign_id: str, as_of: datetime | None, seed: int
    ) -> AllocationOutcome:
        return self._allocate(tenant, campaign_id, self.period_of(as_of), seed)

    def _allocate(
        self, tenant: str, campaign_id: str, period_start: datetime, seed: int
    ) -> AllocationOutcome:
        found = self.store.revision_and_previous(tenant, campaign_id, period_start)
        if found is None:
            raise NotFound(f"campaign {campaign_id} not found")
        revision, previous_id = found
        plan_version = (revision, self.store.facts_refresh(tenant, campaign_id))
        plan = self._plan(tenant, campaign_id, plan_version)
        c = plan.campaign
        previous = (
            self._previous_decision(tenant, campaign_id, previous_id) if previous_id else None
        )
        specs = self._specs.get(
            (tenant, campaign_id, plan_version, previous_id),
            lambda: domain.arm_specs(plan, previous),
        )[0]
        settings = domain.effective_settings(self._settings(), c.policy)
        seed = seed or domain.derive_seed(c.campaign_id, period_start)
        with tracer().start_as_current_span("allocate") as span:
            span.set_attribute("jangkau.campaign_id", c.campaign_id)
            span.set_attribute("jangkau.arms", len(c.arms))
            version, snapshot = self.metrics.snapshot(
                c, domain.evidence_window(c, period_start), settings.discount
            )

            def decide() -> AllocationOutcome:
                try:
                    return domain.decide(
                        plan, snapshot, previous, period_start, seed, settings, self.policy(), specs
                    )
                except Infeasible as exc:
                    raise FailedPrecondition(f"constraints cannot all hold: {exc}") from None

            # Everything the outcome is a function of (plan_version fixes the plan,
            # previous_id the previous decision, version the snapshot); a snapshot
            # without a version is never reused.
            key = (tenant, campaign_id, plan_version, previous_id, period_start, seed, settings)
            if version:
                outcome, how = self._outcomes.get((*key, version), decide)
            else:
                outcome, how = decide(), "miss"
            span.set_attribute("jangkau.reused", how != "miss")
            span.set_attribute("jangkau.period_budget_micros", outcome.period_budget_micros)
            span.set_attribute("jangkau.allocated_micros", outcome.allocated_micros)
            span.set_attribute("jangkau.hours_observed", outcome.hours_observed)
            instruments().allocations.add(1)
            return outcome

    def _refresh_facts(self, tenant: str, campaign_id: str) -> None:
        """Reads the campaign's audiences as they are now, before a decision is
        recorded: a buyer may have narrowed, widened or deleted one since the campaign
        was saved, and an arm whose audience fell below a platform's minimum (or now
        uses a contact list a platform refuses) must get nothing. When the audience
        service cannot answer, the decision stands on the facts stored last."""
        if self.audiences is None:
            return
        revision = self.store.campaign_revision(tenant, campaign_id)
        if revision is None:
            return  # _allocate says NotFound
        version = (revision, self.store.facts_refresh(tenant, campaign_id))
        campaign = self._plan(tenant, campaign_id, version).campaign
        try:
            facts = self.audiences.facts(campaign)
        except (Unavailable, FailedPrecondition) as exc:
            log.warning("deciding %s on its stored audience facts: %s", campaign_id, exc)
            return
        if self.store.refresh_facts(tenant, campaign_id, revision, facts.values()):
            log.info("audience facts of %s changed since it was saved", campaign_id)

    def rebalance(
        self, tenant: str, campaign_id: str, as_of: datetime | None, seed: int
    ) -> Recorded:
        period_start = self.period_of(as_of)
        existing = self.store.decision_for(tenant, campaign_id, period_start)
        if existing is not None:
            return Recorded(existing, replayed=True)
        self._refresh_facts(tenant, campaign_id)
        outcome = self._allocate(tenant, campaign_id, period_start, seed)
        decision_id = new_id("dec")
        stored = self.store.insert_decision(
            tenant,
            campaign_id,
            period_start,
            decision_id,
            self._clock(),
            allocation_to_wire(outcome).SerializeToString(),
        )
        replayed = stored.decision_id != decision_id
        if not replayed:
            instruments().spend_allocated.add(outcome.allocated_micros)
        # Another replica may have recorded the period first: its decision stands.
        return Recorded(stored, replayed=replayed)
