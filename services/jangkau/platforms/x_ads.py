"""X Ads API adapter: an arm is a line item (the campaign's `budget_optimization`
must be LINE_ITEM for line items to hold a daily budget).

Budget change — one request per line item, parameters in the query string:

    PUT https://ads-api.x.com/{version}/accounts/{account_id}/line_items/{line_item_id}
        ?daily_budget_amount_local_micro=<micros>&entity_status=ACTIVE   (entity_status=PAUSED for 0)

Amounts are micros of the funding instrument's currency, at the currency's
precision (money.x_unit_micros: IDR has two decimals, so multiples of 10,000
micros). X answers `{"data": {…line item…}, "request": {"params": {…}}}`.

Report pull — synchronous analytics, at most 7 days and 20 entities a request;
conversion metrics in their own request, as X recommends:

    GET https://ads-api.x.com/{version}/stats/accounts/{account_id}
        ?entity=LINE_ITEM&entity_ids=a,b&start_time=…Z&end_time=…Z&granularity=HOUR
         &placement=ALL_ON_TWITTER&metric_groups=ENGAGEMENT,BILLING   (then WEB_CONVERSION)

`start_time`/`end_time` are whole UTC hours, the end exclusive; every metric is an
array with one value per hour (null when the entity did not serve). Spend is
`billed_charge_local_micro`; a web conversion metric (`conversion_sign_ups` by
default) is an object whose `metric` array counts conversions and `sale_amount`
holds their value in local micros. X has no hourly reach: reported as 0.

Every request carries an OAuth 1.0a `Authorization` header from the injected
signer. Errors: `{"errors": [{"code": "INVALID_PARAMETER", "message", "parameter"}]}`
with a 4xx/5xx status; 429 is a rate limit (`x-rate-limit-reset` says when it
lifts), 503 and 500 are transient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from jangkau.platforms.base import (
    ONE_HOUR,
    ArmBudget,
    ArmTarget,
    BudgetResult,
    CampaignTarget,
    Clock,
    InvalidTarget,
    PlatformError,
    PlatformReport,
    RateLimited,
    require_window,
    resolve_budgets,
    system_clock,
)
from jangkau.platforms.http import HttpRequest, HttpResponse, HttpTransport
from jangkau.platforms.money import floor_to_unit, x_unit_micros
from jangkau.platforms.rest import (
    chunks,
    failure_for_status,
    json_answer,
    retry_after,
    send_checked,
    spans,
)
from jangkau.v1 import common_pb2

PLATFORM = common_pb2.X
ADS_API_URL = "https://ads-api.x.com"
DEFAULT_API_VERSION = "12"
MAX_ENTITIES_PER_STATS_REQUEST = 20
MAX_SYNC_STATS_SPAN = timedelta(days=7)


class RequestSigner(Protocol):
    """Adds authentication to a finished request (OAuth 1.0a for X)."""

    def sign(self, request: HttpRequest) -> HttpRequest: ...


class OAuth1Signer:
    """OAuth 1.0a HMAC-SHA1 request signing as X documents it: the signature base
    string is METHOD&url&params with every query and form parameter and the
    oauth_* values, percent-encoded (RFC 3986) and sorted; the key is
    consumer_secret&token_secret."""

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        token: str,
        token_secret: str,
        *,
        clock: Clock = system_clock,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.token = token
        self.token_secret = token_secret
        self.clock = clock
        self.nonce = nonce

    def oauth_params(self, request: HttpRequest) -> dict[str, str]:
        """The seven oauth_* values, signature included, for `request`."""
        oauth = {
            "oauth_consumer_key": self.consumer_key,
            "oauth_nonce": self.nonce(),
            "oauth_signature_method": "HMAC-SHA1",
            "oauth_timestamp": str(int(self.clock().timestamp())),
            "oauth_token": self.token,
            "oauth_version": "1.0",
        }
        pairs = sorted(
            (_percent(name), _percent(value))
            for name, value in [*request.query, *request.form, *oauth.items()]
        )
        parameters = "&".join(f"{name}={value}" for name, value in pairs)
        base = "&".join([request.method.upper(), _percent(request.url), _percent(parameters)])
        key = f"{_percent(self.consumer_secret)}&{_percent(self.token_secret)}"
        digest = hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()
        oauth["oauth_signature"] = base64.b64encode(digest).decode()
        return dict(sorted(oauth.items()))

    def sign(self, request: HttpRequest) -> HttpRequest:
        header = "OAuth " + ", ".join(
            f'{_percent(name)}="{_percent(value)}"'
            for name, value in self.oauth_params(request).items()
        )
        return request.with_header("authorization", header)


class XAdsAdapter:
    """Applies budgets to, and pulls hourly analytics of, a campaign's X line items."""

    platforms = frozenset({PLATFORM})

    def __init__(
        self,
        transport: HttpTransport,
        signer: RequestSigner,
        *,
        api_version: str = DEFAULT_API_VERSION,
        conversion_metric: str | None = "conversion_sign_ups",
        attribution_window: str = "30d_engagement_1d_view",
        placement: str = "ALL_ON_TWITTER",
        clock: Clock = system_clock,
        base_url: str = ADS_API_URL,
    ) -> None:
        self.transport = transport
        self.signer = signer
        self.api_version = api_version
        # WEB_CONVERSION metric counted as conversions; None: no conversion pull.
        self.conversion_metric = conversion_metric
        # Label of the conversion tag's windows (X's defaults: 30-day
        # post-engagement, 1-day post-view).
        self.attribution_window = attribution_window
        self.placement = placement
        self.clock = clock
        self.base_url = base_url.rstrip("/")

    # --- budgets ------------------------------------------------------------

    def apply_budgets(
        self, campaign: CampaignTarget, budgets: Sequence[ArmBudget]
    ) -> list[BudgetResult]:
        pairs = resolve_budgets(campaign, budgets, PLATFORM)
        unit = x_unit_micros(campaign.currency)
        results: list[BudgetResult] = []
        halted = ""
        for budget, target in pairs:
            rounded = floor_to_unit(budget.daily_budget_micros, unit)
            if halted:
                results.append(
                    BudgetResult.refused(budget.arm_id, rounded, f"not sent: {halted}", True)
                )
                continue
            _require_account(target)
            try:
                response = send_checked(
                    self.transport,
                    self.signer.sign(self.budget_request(target, rounded)),
                    PLATFORM,
                    self.read_error,
                )
                body = json_answer(response, PLATFORM)
                # A paused line item keeps its old budget, but the arm now spends 0.
                applied = _echoed_budget(body, rounded) if rounded else 0
            except PlatformError as err:
                results.append(
                    BudgetResult.refused(budget.arm_id, rounded, err.summary, err.retryable)
                )
                if isinstance(err, RateLimited) or err.code == "transport":
                    halted = err.summary
                continue
            results.append(BudgetResult(budget.arm_id, True, applied))
        return results

    def budget_request(self, target: ArmTarget, micros: int) -> HttpRequest:
        """The unsigned PUT setting a line item's daily budget (0: pause it)."""
        query: tuple[tuple[str, str], ...]
        if micros > 0:
            query = (
                ("daily_budget_amount_local_micro", str(micros)),
                ("entity_status", "ACTIVE"),
            )
        else:
            query = (("entity_status", "PAUSED"),)
        return HttpRequest(
            "PUT",
            f"{self.base_url}/{self.api_version}/accounts/{target.account_id}"
            f"/line_items/{target.entity_id}",
            query=query,
        )

    # --- reports ------------------------------------------------------------

    def fetch_reports(
        self, campaign: CampaignTarget, since: datetime, until: datetime
    ) -> list[PlatformReport]:
        require_window(since, until)
        version = self.clock()
        by_account: dict[str, dict[str, str]] = {}
        for target in campaign.arms_on(self.platforms):
            _require_account(target)
            by_account.setdefault(target.account_id, {})[target.entity_id] = target.arm_id
        reports: list[PlatformReport] = []
        for account, arm_of in by_account.items():
            for start, end in spans(since, until, MAX_SYNC_STATS_SPAN):
                for ids in chunks(list(arm_of), MAX_ENTITIES_PER_STATS_REQUEST):
                    delivery = self._stats(account, ids, start, end, "ENGAGEMENT,BILLING")
                    conversions = (
                        self._stats(account, ids, start, end, "WEB_CONVERSION")
                        if self.conversion_metric
                        else {}
                    )
                    for entity_id in ids:
                        reports += self._hourly(
                            campaign,
                            arm_of[entity_id],
                            start,
                            delivery.get(entity_id, {}),
                            conversions.get(entity_id, {}),
                            version,
                        )
        return reports

    def stats_request(
        self, account: str, ids: Sequence[str], start: datetime, end: datetime, groups: str
    ) -> HttpRequest:
        """The unsigned synchronous analytics request, HOUR granularity."""
        return HttpRequest(
            "GET",
            f"{self.base_url}/{self.api_version}/stats/accounts/{account}",
            query=(
                ("entity", "LINE_ITEM"),
                ("entity_ids", ",".join(ids)),
                ("start_time", _iso_hour(start)),
                ("end_time", _iso_hour(end)),
                ("granularity", "HOUR"),
                ("placement", self.placement),
                ("metric_groups", groups),
            ),
        )

    def _stats(
        self, account: str, ids: Sequence[str], start: datetime, end: datetime, groups: str
    ) -> dict[str, Mapping[str, Any]]:
        request = self.signer.sign(self.stats_request(account, ids, start, end, groups))
        body = json_answer(
            send_checked(self.transport, request, PLATFORM, self.read_error), PLATFORM
        )
        metrics: dict[str, Mapping[str, Any]] = {}
        for entity in body.get("data", []) if isinstance(body, dict) else []:
            for series in entity.get("id_data", []):
                # Non-segmented requests carry one series with segment null.
                if series.get("segment") is None:
                    metrics[str(entity["id"])] = series.get("metrics") or {}
        return metrics

    def _hourly(
        self,
        campaign: CampaignTarget,
        arm_id: str,
        start: datetime,
        delivery: Mapping[str, Any],
        conversions: Mapping[str, Any],
        version: datetime,
    ) -> list[PlatformReport]:
        converted = (
            (conversions.get(self.conversion_metric) or {}) if self.conversion_metric else {}
        )
        series = {
            "impressions": delivery.get("impressions"),
            "clicks": delivery.get("clicks"),
            "spend": delivery.get("billed_charge_local_micro"),
            "conversions": converted.get("metric"),
            "value": converted.get("sale_amount"),
        }
        length = max((len(values) for values in series.values() if values), default=0)
        reports = []
        for index in range(length):
            values = {name: _at(values, index) for name, values in series.items()}
            # All null: the line item did not serve that hour; zeros are kept (restatements).
            if all(value is None for value in values.values()):
                continue
            reports.append(
                PlatformReport(
                    campaign_id=campaign.campaign_id,
                    arm_id=arm_id,
                    platform=PLATFORM,
                    hour=start + index * ONE_HOUR,
                    attribution_window=self.attribution_window,
                    impressions=int(values["impressions"] or 0),
                    reach=0,
                    clicks=int(values["clicks"] or 0),
                    conversions=float(values["conversions"] or 0),
                    conversion_value_micros=int(values["value"] or 0),
                    spend_micros=int(values["spend"] or 0),
                    currency=campaign.currency,
                    version=version,
                )
            )
        return reports

    def read_error(self, response: HttpResponse) -> PlatformError | None:
        """The `PlatformError` an X Ads answer carries, or None for a success."""
        if 200 <= response.status < 300:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = body.get("errors") if isinstance(body, dict) else None
        first = errors[0] if isinstance(errors, list) and errors else {}
        code = str(first.get("code", ""))
        message = str(first.get("message") or f"HTTP {response.status}")
        if first.get("parameter"):
            message = f"{message} (parameter {first['parameter']})"
        wait = None
        if response.status == 429:
            wait = self._seconds_until_reset(response)
        elif response.status == 503:
            wait = retry_after(response)
        return failure_for_status(PLATFORM, response.status, message, code, wait)

    def _seconds_until_reset(self, response: HttpResponse) -> float | None:
        reset = response.header("x-account-rate-limit-reset") or response.header(
            "x-rate-limit-reset"
        )
        if reset is None or not reset.isdigit():
            return None
        return max(0.0, int(reset) - self.clock().timestamp())


def _echoed_budget(body: Any, sent: int) -> int:
    """The daily budget X says the line item now has; `sent` when it does not say."""
    data = body.get("data") if isinstance(body, dict) else None
    value = data.get("daily_budget_amount_local_micro") if isinstance(data, dict) else None
    return sent if value is None else int(value)


def _require_account(target: ArmTarget) -> None:
    if not target.account_id:
        raise InvalidTarget(PLATFORM, f"arm {target.arm_id} has no ads account id")


def _at(values: Any, index: int) -> Any:
    if not values or index >= len(values):
        return None
    return values[index]


def _iso_hour(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:00:00Z")


def _percent(text: str) -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX (upper case).
    return urllib.parse.quote(text, safe="-._~")
