"""Meta Marketing API adapter: an arm is an ad set.

Budget change — one request per ad set (the ad set holds the daily budget):

    POST https://graph.facebook.com/{version}/{ad_set_id}
    form: daily_budget=<minor units>, status=ACTIVE, access_token=…   (status=PAUSED alone for 0)

`daily_budget` is an integer in the ad account currency's minimum denomination:
major units × the currency's offset (money.meta_offset). IDR has offset 1, so
Rp 150,000 is `daily_budget=150000`; USD has 100 (cents). Micros are rounded down
to that unit. Meta answers `{"success": true}`.

Report pull — one request per ad set (and per page):

    GET https://graph.facebook.com/{version}/{ad_set_id}/insights
        ?fields=spend,impressions,clicks,actions,action_values
        &breakdowns=hourly_stats_aggregated_by_advertiser_time_zone
        &time_increment=1&time_range={"since":"YYYY-MM-DD","until":"YYYY-MM-DD"}
        &use_unified_attribution_setting=true&limit=500&access_token=…

Each row carries `date_start` and the hour as "HH:00:00 - HH:59:59" in the ad
account's time zone (converted to UTC here); `spend` is a decimal string of major
units. Meta's docs: hourly breakdowns support no unique fields, so `reach` cannot
be asked for (reported as 0), and off-Meta (pixel) actions are not returned with
hourly breakdowns, so conversions are counted from an on-Meta action type
(`conversion_action_type`, lead forms by default).

Errors: `{"error": {"code", "error_subcode", "message", "error_user_msg",
"is_transient", "fbtrace_id"}}`. Codes 4, 17, 32, 613 and 80000–80014 are rate
limits (an ad set's budget may change only 4 times an hour: code 17); codes 1, 2
and `is_transient` are transient; the rest, such as 100/1885272 ("your budget is
too low"), are permanent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jangkau.platforms.base import (
    ArmBudget,
    BudgetResult,
    CampaignTarget,
    Clock,
    InvalidTarget,
    PermanentPlatformError,
    PlatformError,
    PlatformReport,
    RateLimited,
    TransientPlatformError,
    require_window,
    resolve_budgets,
    system_clock,
)
from jangkau.platforms.http import HttpRequest, HttpResponse, HttpTransport
from jangkau.platforms.money import (
    decimal_to_micros,
    meta_offset,
    micros_to_minor_units,
    minor_units_to_micros,
)
from jangkau.platforms.rest import (
    failure_for_status,
    json_answer,
    local_dates,
    local_hour_to_utc,
    send_checked,
    zone_of,
)
from jangkau.v1 import common_pb2

PLATFORM = common_pb2.META
GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v24.0"
HOURLY_BREAKDOWN = "hourly_stats_aggregated_by_advertiser_time_zone"
INSIGHT_FIELDS = "spend,impressions,clicks,actions,action_values"

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
BUDGET_TOO_LOW_SUBCODE = 1885272


class MetaAdapter:
    """Applies budgets to, and pulls hourly insights of, a campaign's Meta ad sets."""

    platforms = frozenset({PLATFORM})

    def __init__(
        self,
        transport: HttpTransport,
        access_token: Callable[[], str],
        *,
        api_version: str = DEFAULT_API_VERSION,
        conversion_action_type: str = "onsite_conversion.lead_grouped",
        attribution_window: str = "7d_click_1d_view",
        clock: Clock = system_clock,
        base_url: str = GRAPH_URL,
        page_size: int = 500,
        max_pages: int = 50,
    ) -> None:
        self.transport = transport
        self.access_token = access_token
        self.api_version = api_version
        # The `actions[].action_type` counted as a conversion.
        self.conversion_action_type = conversion_action_type
        # Label of the ad sets' attribution setting, which
        # use_unified_attribution_setting=true makes Meta count under.
        self.attribution_window = attribution_window
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self.max_pages = max_pages

    # --- budgets ------------------------------------------------------------

    def apply_budgets(
        self, campaign: CampaignTarget, budgets: Sequence[ArmBudget]
    ) -> list[BudgetResult]:
        pairs = resolve_budgets(campaign, budgets, PLATFORM)
        offset = self._offset(campaign.currency)
        results: list[BudgetResult] = []
        halted = ""
        for budget, target in pairs:
            units = micros_to_minor_units(budget.daily_budget_micros, offset)
            applied = minor_units_to_micros(units, offset)
            if halted:
                results.append(
                    BudgetResult.refused(budget.arm_id, applied, f"not sent: {halted}", True)
                )
                continue
            try:
                self._post_budget(target.entity_id, units)
            except PlatformError as err:
                results.append(
                    BudgetResult.refused(budget.arm_id, applied, err.summary, err.retryable)
                )
                # Throttled or unreachable: the other ad sets would fare no better now.
                if isinstance(err, RateLimited) or err.code == "transport":
                    halted = err.summary
                continue
            results.append(BudgetResult(budget.arm_id, True, applied))
        return results

    def budget_request(self, ad_set_id: str, units: int) -> HttpRequest:
        """The request setting an ad set's daily budget to `units` minor units (0: pause)."""
        if units > 0:
            form = [("daily_budget", str(units)), ("status", "ACTIVE")]
        else:
            form = [("status", "PAUSED")]
        form.append(("access_token", self.access_token()))
        return HttpRequest(
            "POST", f"{self.base_url}/{self.api_version}/{ad_set_id}", form=tuple(form)
        )

    def _post_budget(self, ad_set_id: str, units: int) -> None:
        response = send_checked(
            self.transport, self.budget_request(ad_set_id, units), PLATFORM, read_error
        )
        body = _json_object(response)
        if body.get("success") is not True:
            raise PermanentPlatformError(
                PLATFORM, f"unexpected answer: {response.body[:200]!r}", status=response.status
            )

    # --- reports ------------------------------------------------------------

    def fetch_reports(
        self, campaign: CampaignTarget, since: datetime, until: datetime
    ) -> list[PlatformReport]:
        require_window(since, until)
        version = self.clock()
        reports: list[PlatformReport] = []
        for target in campaign.arms_on(self.platforms):
            if not target.entity_id:
                raise InvalidTarget(PLATFORM, f"arm {target.arm_id} has no ad set id")
            zone = zone_of(target, PLATFORM)
            first_day, last_day = local_dates(since, until, zone)
            for row in self._insight_rows(target.entity_id, first_day, last_day):
                hour = local_hour_to_utc(
                    date.fromisoformat(row["date_start"]), _row_hour(row), zone
                )
                if not since <= hour < until:
                    continue
                reports.append(
                    PlatformReport(
                        campaign_id=campaign.campaign_id,
                        arm_id=target.arm_id,
                        platform=PLATFORM,
                        hour=hour,
                        attribution_window=self.attribution_window,
                        impressions=int(row.get("impressions", "0")),
                        reach=0,
                        clicks=int(row.get("clicks", "0")),
                        conversions=float(self._action_total(row.get("actions"))),
                        conversion_value_micros=decimal_to_micros(
                            self._action_total(row.get("action_values"))
                        ),
                        spend_micros=decimal_to_micros(str(row.get("spend", "0"))),
                        currency=campaign.currency,
                        version=version,
                    )
                )
        return reports

    def insights_request(
        self, ad_set_id: str, first_day: date, last_day: date, after: str = ""
    ) -> HttpRequest:
        """The insights request for local days [first_day, last_day] (inclusive)."""
        time_range = json.dumps(
            {"since": first_day.isoformat(), "until": last_day.isoformat()},
            separators=(",", ":"),
        )
        query = [
            ("fields", INSIGHT_FIELDS),
            ("breakdowns", HOURLY_BREAKDOWN),
            ("time_increment", "1"),
            ("time_range", time_range),
            ("use_unified_attribution_setting", "true"),
            ("limit", str(self.page_size)),
        ]
        if after:
            query.append(("after", after))
        query.append(("access_token", self.access_token()))
        return HttpRequest(
            "GET",
            f"{self.base_url}/{self.api_version}/{ad_set_id}/insights",
            query=tuple(query),
        )

    def _insight_rows(self, ad_set_id: str, first_day: date, last_day: date) -> Iterator[Any]:
        after = ""
        for _ in range(self.max_pages):
            request = self.insights_request(ad_set_id, first_day, last_day, after)
            body = _json_object(send_checked(self.transport, request, PLATFORM, read_error))
            yield from body.get("data", [])
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after", "")
            if not paging.get("next") or not after:
                return
        raise TransientPlatformError(
            PLATFORM, f"ad set {ad_set_id}: more than {self.max_pages} pages of insights"
        )

    def _action_total(self, actions: Any) -> Decimal:
        total = Decimal(0)
        for action in actions or []:
            if action.get("action_type") == self.conversion_action_type:
                total += Decimal(str(action.get("value", "0")))
        return total

    def _offset(self, currency: str) -> int:
        try:
            return meta_offset(currency)
        except ValueError as err:
            raise InvalidTarget(PLATFORM, str(err)) from err


def read_error(response: HttpResponse) -> PlatformError | None:
    """The `PlatformError` a Graph API answer carries, or None for a success."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        if 200 <= response.status < 300:
            return None
        return failure_for_status(PLATFORM, response.status, f"HTTP {response.status}")
    code = int(error.get("code") or 0)
    subcode = error.get("error_subcode")
    code_text = f"{code}/{subcode}" if subcode else str(code)
    message = str(error.get("error_user_msg") or error.get("message") or "unknown error")
    status = response.status
    if code in RATE_LIMIT_CODES:
        return RateLimited(PLATFORM, message, status=status, code=code_text)
    if error.get("is_transient") or code in TRANSIENT_CODES or status >= 500:
        return TransientPlatformError(PLATFORM, message, status=status, code=code_text)
    return PermanentPlatformError(PLATFORM, message, status=status, code=code_text)


def _row_hour(row: Any) -> int:
    # "13:00:00 - 13:59:59" -> 13
    return int(str(row[HOURLY_BREAKDOWN])[:2])


def _json_object(response: HttpResponse) -> dict[str, Any]:
    body = json_answer(response, PLATFORM)
    if not isinstance(body, dict):
        raise PermanentPlatformError(
            PLATFORM, "answer is not a JSON object", status=response.status
        )
    return body
