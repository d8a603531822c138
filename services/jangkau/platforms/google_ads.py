"""Google Ads API (REST) adapter: an arm is a campaign; its daily budget lives in
the campaign's CampaignBudget.

Budget change — per customer, two mutates with partial failure, so one bad arm
does not sink the others:

    POST https://googleads.googleapis.com/{version}/customers/{cid}/campaignBudgets:mutate
    {"operations": [{"update": {"resourceName": "customers/{cid}/campaignBudgets/{id}",
                                "amountMicros": "<micros>"},
                     "updateMask": "amountMicros"}],
     "partialFailure": true}

    POST …/customers/{cid}/campaigns:mutate
    {"operations": [{"update": {"resourceName": "customers/{cid}/campaigns/{id}",
                                "status": "ENABLED" | "PAUSED"}, "updateMask": "status"}],
     "partialFailure": true}

`amount_micros` must be a multiple of the currency's billable unit (money.
google_unit_micros); int64 travels as a JSON string and the field mask in its
JSON (lowerCamelCase) form. An arm turned on gets its budget first and is
enabled only when the budget was accepted; an arm at 0 is paused, its budget
left as it was. Headers: `Authorization: Bearer <OAuth token>`,
`developer-token`, and `login-customer-id` when calling through a manager account.

Report pull — one GoogleAdsService.SearchStream per customer:

    POST …/customers/{cid}/googleAds:searchStream
    {"query": "SELECT campaign.resource_name, segments.date, segments.hour,
               metrics.impressions, metrics.clicks, metrics.conversions,
               metrics.conversions_value, metrics.cost_micros FROM campaign
               WHERE campaign.resource_name IN (…) AND segments.date BETWEEN … AND …"}

The answer is a JSON array of batches `{"results": [row…], "fieldMask", "requestId"}`;
`segments.hour` is 0..23 in the account's time zone and, like every zero value
in proto3 JSON, is left out when 0; `costMicros` is an int64 string;
`conversions` and `conversionsValue` (currency units) are doubles.

Errors: `{"error": {"code", "message", "status", "details": [{"@type":
"…GoogleAdsFailure", "errors": [{"errorCode": {"<category>": "<NAME>"}, "message",
"location": {"fieldPathElements": [{"fieldName": "operations", "index": n}]}}]}]}}`,
also as the last element of a searchStream array. With partial failure a mutate
answers 200 with `results` (an empty object for each failed operation) and
`partialFailureError` of the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jangkau.platforms.base import (
    ArmBudget,
    ArmTarget,
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
from jangkau.platforms.money import decimal_to_micros, floor_to_unit, google_unit_micros
from jangkau.platforms.rest import (
    failure_for_status,
    json_answer,
    local_dates,
    local_hour_to_utc,
    send_checked,
    zone_of,
)
from jangkau.v1 import common_pb2

PLATFORM = common_pb2.GOOGLE
GOOGLE_ADS_URL = "https://googleads.googleapis.com"
DEFAULT_API_VERSION = "v26"

# GoogleAdsError.error_code categories worth trying again later.
RETRYABLE_CATEGORIES = frozenset({"quotaError", "internalError", "databaseError"})
TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})

_CUSTOMER_ID = re.compile(r"^\d{10}$")


@dataclass(frozen=True)
class _Outcome:
    """What happened to one mutate operation."""

    ok: bool
    message: str = ""
    retryable: bool = False


class GoogleAdsAdapter:
    """Applies budgets to, and pulls hourly metrics of, a campaign's Google Ads campaigns."""

    platforms = frozenset({PLATFORM})

    def __init__(
        self,
        transport: HttpTransport,
        access_token: Callable[[], str],
        developer_token: str,
        *,
        login_customer_id: str = "",
        api_version: str = DEFAULT_API_VERSION,
        billable_unit_micros: Mapping[str, int] | None = None,
        attribution_window: str = "conversion_action_default",
        clock: Clock = system_clock,
        base_url: str = GOOGLE_ADS_URL,
    ) -> None:
        self.transport = transport
        self.access_token = access_token
        self.developer_token = developer_token
        # Manager account the credentials belong to, digits only; "" when direct.
        self.login_customer_id = login_customer_id.replace("-", "")
        self.api_version = api_version
        # currency -> currency_constant.billable_unit_micros, overriding the defaults.
        self.billable_unit_micros = dict(billable_unit_micros or {})
        # metrics.conversions counts each conversion action under its own windows.
        self.attribution_window = attribution_window
        self.clock = clock
        self.base_url = base_url.rstrip("/")

    # --- budgets ------------------------------------------------------------

    def apply_budgets(
        self, campaign: CampaignTarget, budgets: Sequence[ArmBudget]
    ) -> list[BudgetResult]:
        pairs = resolve_budgets(campaign, budgets, PLATFORM)
        unit = google_unit_micros(campaign.currency, self.billable_unit_micros)
        by_customer: dict[str, list[tuple[ArmBudget, ArmTarget, int]]] = {}
        for budget, target in pairs:
            rounded = floor_to_unit(budget.daily_budget_micros, unit)
            customer = _customer_id(target)
            _check_resource(target.entity_id, customer, "campaigns", target.arm_id)
            if rounded > 0:
                _check_resource(target.budget_id, customer, "campaignBudgets", target.arm_id)
            by_customer.setdefault(customer, []).append((budget, target, rounded))
        results: dict[str, BudgetResult] = {}
        for customer, group in by_customer.items():
            results.update(self._apply_customer(customer, group))
        return [results[budget.arm_id] for budget, _ in pairs]

    def _apply_customer(
        self, customer: str, group: list[tuple[ArmBudget, ArmTarget, int]]
    ) -> dict[str, BudgetResult]:
        turning_on = [(b, t, r) for b, t, r in group if r > 0]
        budget_outcomes = (
            self._mutate(
                self.budget_request(customer, [(t.budget_id, r) for _, t, r in turning_on])
            )
            if turning_on
            else []
        )
        # Enable only arms whose new budget holds; pause every arm at 0.
        status_ops: list[tuple[ArmBudget, ArmTarget, int, str]] = []
        results: dict[str, BudgetResult] = {}
        for (budget, target, rounded), outcome in zip(turning_on, budget_outcomes, strict=True):
            if outcome.ok:
                status_ops.append((budget, target, rounded, "ENABLED"))
            else:
                results[budget.arm_id] = BudgetResult.refused(
                    budget.arm_id, rounded, outcome.message, outcome.retryable
                )
        status_ops += [(b, t, r, "PAUSED") for b, t, r in group if r == 0]
        if status_ops:
            request = self.status_request(customer, [(t.entity_id, s) for _, t, _, s in status_ops])
            for (budget, _, rounded, status), outcome in zip(
                status_ops, self._mutate(request), strict=True
            ):
                if outcome.ok:
                    results[budget.arm_id] = BudgetResult(budget.arm_id, True, rounded)
                    continue
                message = outcome.message
                if status == "ENABLED":
                    message = f"budget set but campaign not enabled: {message}"
                results[budget.arm_id] = BudgetResult.refused(
                    budget.arm_id, rounded, message, outcome.retryable
                )
        return results

    def budget_request(self, customer: str, budgets: Sequence[tuple[str, int]]) -> HttpRequest:
        """campaignBudgets:mutate setting each (budget resource name, amount micros)."""
        operations = [
            {
                "update": {"resourceName": name, "amountMicros": str(micros)},
                "updateMask": "amountMicros",
            }
            for name, micros in budgets
        ]
        return self._post(f"customers/{customer}/campaignBudgets:mutate", operations)

    def status_request(self, customer: str, statuses: Sequence[tuple[str, str]]) -> HttpRequest:
        """campaigns:mutate setting each (campaign resource name, ENABLED|PAUSED)."""
        operations = [
            {"update": {"resourceName": name, "status": status}, "updateMask": "status"}
            for name, status in statuses
        ]
        return self._post(f"customers/{customer}/campaigns:mutate", operations)

    def _post(self, path: str, operations: list[dict[str, Any]]) -> HttpRequest:
        return HttpRequest(
            "POST",
            f"{self.base_url}/{self.api_version}/{path}",
            headers=self._headers(),
            json_body={"operations": operations, "partialFailure": True},
        )

    def _mutate(self, request: HttpRequest) -> list[_Outcome]:
        """One outcome per operation of `request`; a failed call fails them all."""
        count = len(request.json_body["operations"])
        try:
            response = send_checked(self.transport, request, PLATFORM, read_error)
            body = json_answer(response, PLATFORM)
        except PlatformError as err:
            return [_Outcome(False, err.summary, err.retryable)] * count
        results = body.get("results") or []
        errors = _errors_by_operation(body.get("partialFailureError"))
        unplaced = errors.pop(None, [])
        outcomes = []
        for index in range(count):
            if index < len(results) and results[index]:
                outcomes.append(_Outcome(True))
                continue
            found = errors.get(index, []) + unplaced
            message = "; ".join(text for text, _ in found) or "operation failed"
            retryable = bool(found) and all(again for _, again in found)
            outcomes.append(_Outcome(False, message, retryable))
        return outcomes

    # --- reports ------------------------------------------------------------

    def fetch_reports(
        self, campaign: CampaignTarget, since: datetime, until: datetime
    ) -> list[PlatformReport]:
        require_window(since, until)
        version = self.clock()
        by_customer: dict[str, list[ArmTarget]] = {}
        for target in campaign.arms_on(self.platforms):
            customer = _customer_id(target)
            _check_resource(target.entity_id, customer, "campaigns", target.arm_id)
            by_customer.setdefault(customer, []).append(target)
        reports: list[PlatformReport] = []
        for customer, targets in by_customer.items():
            zones = {target.time_zone for target in targets}
            if len(zones) != 1:
                raise InvalidTarget(
                    PLATFORM,
                    f"customer {customer}: arms disagree on the time zone: {sorted(zones)}",
                )
            zone = zone_of(targets[0], PLATFORM)
            first_day, last_day = local_dates(since, until, zone)
            arm_of = {target.entity_id: target.arm_id for target in targets}
            request = self.report_request(customer, list(arm_of), first_day, last_day)
            answer = json_answer(
                send_checked(self.transport, request, PLATFORM, read_error), PLATFORM
            )
            for row in _stream_rows(answer):
                segments = row.get("segments", {})
                metrics = row.get("metrics", {})
                hour = local_hour_to_utc(
                    date.fromisoformat(segments["date"]), int(segments.get("hour", 0)), zone
                )
                arm_id = arm_of.get(row.get("campaign", {}).get("resourceName", ""))
                if arm_id is None or not since <= hour < until:
                    continue
                reports.append(
                    PlatformReport(
                        campaign_id=campaign.campaign_id,
                        arm_id=arm_id,
                        platform=PLATFORM,
                        hour=hour,
                        attribution_window=self.attribution_window,
                        impressions=int(metrics.get("impressions", 0)),
                        reach=0,
                        clicks=int(metrics.get("clicks", 0)),
                        conversions=float(Decimal(str(metrics.get("conversions", 0)))),
                        conversion_value_micros=decimal_to_micros(
                            Decimal(str(metrics.get("conversionsValue", 0)))
                        ),
                        spend_micros=int(metrics.get("costMicros", 0)),
                        currency=campaign.currency,
                        version=version,
                    )
                )
        return reports

    def report_request(
        self, customer: str, campaigns: Sequence[str], first_day: date, last_day: date
    ) -> HttpRequest:
        """googleAds:searchStream for the hourly metrics of `campaigns` (resource
        names) on local days [first_day, last_day]."""
        names = ", ".join(f"'{name}'" for name in campaigns)
        query = (
            "SELECT campaign.resource_name, segments.date, segments.hour, "
            "metrics.impressions, metrics.clicks, metrics.conversions, "
            "metrics.conversions_value, metrics.cost_micros "
            "FROM campaign "
            f"WHERE campaign.resource_name IN ({names}) "
            f"AND segments.date BETWEEN '{first_day.isoformat()}' AND '{last_day.isoformat()}'"
        )
        return HttpRequest(
            "POST",
            f"{self.base_url}/{self.api_version}/customers/{customer}/googleAds:searchStream",
            headers=self._headers(),
            json_body={"query": query},
        )

    def _headers(self) -> tuple[tuple[str, str], ...]:
        headers = [
            ("authorization", f"Bearer {self.access_token()}"),
            ("developer-token", self.developer_token),
        ]
        if self.login_customer_id:
            headers.append(("login-customer-id", self.login_customer_id))
        return tuple(headers)


def read_error(response: HttpResponse) -> PlatformError | None:
    """The `PlatformError` a Google Ads answer carries, or None for a success.
    A searchStream answer can be 200 and still end with an error element."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = None
    if isinstance(body, dict):
        error = body.get("error")
    elif isinstance(body, list):
        error = next(
            (item["error"] for item in body if isinstance(item, dict) and "error" in item), None
        )
    if not isinstance(error, dict):
        if 200 <= response.status < 300:
            return None
        return failure_for_status(PLATFORM, response.status, f"HTTP {response.status}")
    status_name = str(error.get("status", ""))
    failures = [item for errors in _failures(error) for item in errors]
    category, name, message = "", "", str(error.get("message") or status_name or "error")
    retry_seconds = None
    if failures:
        first = failures[0]
        category, name = _error_code(first)
        message = str(first.get("message") or message)
        retry_seconds = _retry_delay(first)
    code = f"{category}.{name}" if category else status_name
    status = response.status if response.status >= 400 else int(error.get("code") or 500)
    if status == 429 or status_name == "RESOURCE_EXHAUSTED" or category == "quotaError":
        return RateLimited(
            PLATFORM, message, status=status, code=code, retry_after_seconds=retry_seconds
        )
    if status >= 500 or status_name in TRANSIENT_STATUSES:
        return TransientPlatformError(PLATFORM, message, status=status, code=code)
    return PermanentPlatformError(PLATFORM, message, status=status, code=code)


def _failures(status: Mapping[str, Any]) -> list[list[Mapping[str, Any]]]:
    """The GoogleAdsError lists inside a google.rpc.Status's details."""
    return [
        list(detail.get("errors", []))
        for detail in status.get("details", []) or []
        if isinstance(detail, dict) and "errors" in detail
    ]


def _error_code(error: Mapping[str, Any]) -> tuple[str, str]:
    # {"errorCode": {"campaignBudgetError": "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"}}
    for category, name in (error.get("errorCode") or {}).items():
        return str(category), str(name)
    return "", ""


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    # details.quotaErrorDetails.retryDelay is a Duration string such as "30s".
    delay = ((error.get("details") or {}).get("quotaErrorDetails") or {}).get("retryDelay")
    if isinstance(delay, str) and delay.endswith("s"):
        try:
            return float(delay[:-1])
        except ValueError:
            return None
    return None


def _errors_by_operation(
    status: Mapping[str, Any] | None,
) -> dict[int | None, list[tuple[str, bool]]]:
    """Partial-failure errors by operation index: [(message, retryable)]. Errors
    that name no operation are under None."""
    found: dict[int | None, list[tuple[str, bool]]] = {}
    for errors in _failures(status or {}):
        for error in errors:
            category, name = _error_code(error)
            text = (
                f"{category}.{name}: {error.get('message', '')}"
                if category
                else str(error.get("message", ""))
            )
            index = None
            path = (error.get("location") or {}).get("fieldPathElements") or []
            if path and path[0].get("fieldName") == "operations":
                index = int(path[0].get("index", 0))
            found.setdefault(index, []).append((text, category in RETRYABLE_CATEGORIES))
    return found


def _stream_rows(answer: Any) -> list[Mapping[str, Any]]:
    batches = answer if isinstance(answer, list) else [answer]
    return [row for batch in batches if isinstance(batch, dict) for row in batch.get("results", [])]


def _customer_id(target: ArmTarget) -> str:
    customer = target.account_id.replace("-", "")
    if not _CUSTOMER_ID.match(customer):
        raise InvalidTarget(
            PLATFORM,
            f"arm {target.arm_id}: customer id must be 10 digits, got {target.account_id!r}",
        )
    return customer


def _check_resource(name: str, customer: str, collection: str, arm_id: str) -> None:
    # Resource names go into GAQL and URLs: accept only the exact documented form.
    if not re.fullmatch(rf"customers/{customer}/{collection}/\d+", name):
        raise InvalidTarget(
            PLATFORM,
            f"arm {arm_id}: expected customers/{customer}/{collection}/<id>, got {name!r}",
        )
