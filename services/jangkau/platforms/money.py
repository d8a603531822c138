"""Exact conversions between jangkau's integer micros and the amounts each ad
platform's API takes or reports. Integers and `Decimal` only, never float: a
budget is always rounded *down* to the platform's unit, so what is written is
never more than what was allocated.

Sources for the unit tables are cited next to each table.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from jangkau.runtime.money import MICROS_PER_UNIT

# Meta Marketing API "currency offsets": budgets and bids are integers in the
# account currency's minimum denomination, i.e. major units × offset. Offset 1
# means whole units (an IDR daily_budget of 150000 is Rp 150,000); offset 100
# means cents. Every currency the page lists that is not here has offset 100.
# Source: developers.facebook.com/docs/marketing-api/currencies (the table of
# codes and offsets) and .../marketing-api/bidding/overview/budgets ("at ad
# account currency's minimum denomination level, such as cents for USD").
META_OFFSET_ONE_CURRENCIES: frozenset[str] = frozenset(
    {"CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND"}
)
META_OFFSET_HUNDRED_CURRENCIES: frozenset[str] = frozenset(
    {
        "DZD", "ARS", "AUD", "BHD", "BDT", "BOB", "BGN", "BRL", "GBP", "CAD", "CNY",
        "HRK", "CZK", "DKK", "EGP", "EUR", "GTQ", "HNL", "HKD", "INR", "ILS", "JOD",
        "KES", "LVL", "LTL", "MOP", "MYR", "MXN", "NZD", "NIO", "NGN", "NOK", "PKR",
        "PEN", "PHP", "PLN", "QAR", "RON", "RUB", "SAR", "RSD", "SGD", "SKK", "ZAR",
        "SEK", "CHF", "THB", "TRY", "AED", "UAH", "USD", "UYU", "VEF", "VES",
    }
)  # fmt: skip

# X Ads API: amounts are "local micro" (micros of the funding instrument's
# currency), but a value must fit the currency's precision. Most currencies,
# IDR included, have precision 2; these have 0 or 3.
# Source: docs.x.com/x-ads-api/fundamentals/currency.
X_PRECISION_ZERO_CURRENCIES: frozenset[str] = frozenset({"VND", "KRW", "CLP", "JPY"})
X_PRECISION_THREE_CURRENCIES: frozenset[str] = frozenset({"KWD", "IQD", "BHD", "TND"})

# Google Ads API: CampaignBudget.amount_micros must be a multiple of the
# currency's billable unit (CampaignBudgetError NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT);
# the authoritative value is `currency_constant.billable_unit_micros`, which a
# deployment can read with GAQL and pass to the adapter. These defaults are
# deliberately coarse: a whole unit for currencies used without a fraction (a
# multiple of any finer billable unit), a hundredth otherwise.
GOOGLE_DEFAULT_BILLABLE_UNIT_MICROS: dict[str, int] = {
    "IDR": 1_000_000,
    "JPY": 1_000_000,
    "KRW": 1_000_000,
    "VND": 1_000_000,
    "CLP": 1_000_000,
    "COP": 1_000_000,
    "HUF": 1_000_000,
}
GOOGLE_FALLBACK_BILLABLE_UNIT_MICROS = 10_000

# Enough digits for any int64 count of micros and six more decimals.
_EXACT = Context(prec=40)


def floor_to_unit(micros: int, unit_micros: int) -> int:
    """The largest multiple of `unit_micros` that is <= `micros` (both >= 0)."""
    if micros < 0:
        raise ValueError(f"amount must be >= 0 micros, got {micros}")
    if unit_micros <= 0:
        raise ValueError(f"unit must be > 0 micros, got {unit_micros}")
    return micros - micros % unit_micros


def meta_offset(currency: str) -> int:
    """Meta's offset (minor units per major unit) for `currency`."""
    if currency in META_OFFSET_ONE_CURRENCIES:
        return 1
    if currency in META_OFFSET_HUNDRED_CURRENCIES:
        return 100
    raise ValueError(f"currency {currency!r} is not in Meta's currency table")


def micros_to_minor_units(micros: int, offset: int) -> int:
    """Micros to an integer count of minor units (major × `offset`), rounded down."""
    unit = _unit_micros(offset)
    return floor_to_unit(micros, unit) // unit


def minor_units_to_micros(units: int, offset: int) -> int:
    """An integer count of minor units back to micros (exact)."""
    if units < 0:
        raise ValueError(f"amount must be >= 0 minor units, got {units}")
    return units * _unit_micros(offset)


def x_unit_micros(currency: str) -> int:
    """The smallest step, in micros, of an X Ads amount in `currency`."""
    if currency in X_PRECISION_ZERO_CURRENCIES:
        return MICROS_PER_UNIT
    if currency in X_PRECISION_THREE_CURRENCIES:
        return 1_000
    return 10_000


def google_unit_micros(currency: str, table: dict[str, int] | None = None) -> int:
    """The billable unit, in micros, a Google Ads budget in `currency` must be a multiple of."""
    if table and currency in table:
        return table[currency]
    return GOOGLE_DEFAULT_BILLABLE_UNIT_MICROS.get(currency, GOOGLE_FALLBACK_BILLABLE_UNIT_MICROS)


def decimal_to_micros(value: str | int | Decimal) -> int:
    """A decimal amount of major units ("1234.56", 17, Decimal("0.125")) to micros,
    rounded half-even to the nearest micro. Rejects floats, NaN and infinities."""
    if isinstance(value, bool | float):
        raise TypeError(f"money must not travel as float: {value!r}")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
        if not amount.is_finite():
            raise ValueError(f"not a finite amount: {value!r}")
        scaled = _EXACT.multiply(amount, Decimal(MICROS_PER_UNIT))
        return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_EXACT))
    except InvalidOperation as err:
        raise ValueError(f"not a decimal amount: {value!r}") from err


def _unit_micros(offset: int) -> int:
    if offset <= 0 or MICROS_PER_UNIT % offset:
        raise ValueError(f"offset {offset} does not divide one unit into whole micros")
    return MICROS_PER_UNIT // offset
