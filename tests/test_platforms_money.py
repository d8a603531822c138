"""Money conversions between micros and the platforms' units are exact and never
round a budget up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jangkau.platforms.money import (
    META_OFFSET_HUNDRED_CURRENCIES,
    META_OFFSET_ONE_CURRENCIES,
    decimal_to_micros,
    floor_to_unit,
    google_unit_micros,
    meta_offset,
    micros_to_minor_units,
    minor_units_to_micros,
    x_unit_micros,
)

INT64_MAX = 2**63 - 1


def test_meta_takes_rupiah_budgets_in_whole_rupiah() -> None:
    assert meta_offset("IDR") == 1
    assert micros_to_minor_units(150_000_999_999, meta_offset("IDR")) == 150_000


def test_meta_takes_dollar_budgets_in_cents() -> None:
    assert meta_offset("USD") == 100
    assert micros_to_minor_units(20_009_999, meta_offset("USD")) == 2_000


def test_meta_offset_tables_do_not_overlap() -> None:
    assert not META_OFFSET_ONE_CURRENCIES & META_OFFSET_HUNDRED_CURRENCIES


def test_currency_missing_from_metas_table_is_refused() -> None:
    with pytest.raises(ValueError):
        meta_offset("XTS")


def test_minor_units_convert_back_to_micros_exactly() -> None:
    assert minor_units_to_micros(150_000, 1) == 150_000_000_000
    assert minor_units_to_micros(2_000, 100) == 20_000_000


def test_x_amounts_follow_the_currency_precision() -> None:
    assert x_unit_micros("IDR") == 10_000
    assert x_unit_micros("JPY") == 1_000_000
    assert x_unit_micros("KWD") == 1_000


def test_google_unit_defaults_to_whole_rupiah_and_can_be_overridden() -> None:
    assert google_unit_micros("IDR") == 1_000_000
    assert google_unit_micros("USD") == 10_000
    assert google_unit_micros("IDR", {"IDR": 10_000}) == 10_000


@given(
    micros=st.integers(min_value=0, max_value=INT64_MAX),
    offset=st.sampled_from([1, 100, 1000]),
)
def test_minor_units_never_exceed_the_budget_and_lose_less_than_one_unit(
    micros: int, offset: int
) -> None:
    back = minor_units_to_micros(micros_to_minor_units(micros, offset), offset)
    assert back <= micros
    assert micros - back < 1_000_000 // offset


@given(
    micros=st.integers(min_value=0, max_value=INT64_MAX),
    unit=st.sampled_from([1, 1_000, 10_000, 1_000_000]),
)
def test_floor_to_unit_never_exceeds_the_budget(micros: int, unit: int) -> None:
    floored = floor_to_unit(micros, unit)
    assert floored <= micros
    assert floored % unit == 0
    assert micros - floored < unit


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(ValueError):
        floor_to_unit(-1, 10_000)


def test_decimal_strings_become_exact_micros() -> None:
    assert decimal_to_micros("83410") == 83_410_000_000
    assert decimal_to_micros("1234.56") == 1_234_560_000
    assert decimal_to_micros(Decimal("17500.25")) == 17_500_250_000
    assert decimal_to_micros("9223372036854.775807") == INT64_MAX


def test_fractions_of_a_micro_round_half_even() -> None:
    assert decimal_to_micros("0.0000005") == 0
    assert decimal_to_micros("0.0000015") == 2


def test_floats_are_refused_as_money() -> None:
    with pytest.raises(TypeError):
        decimal_to_micros(0.1)  # type: ignore[arg-type]


def test_non_numbers_are_refused_as_money() -> None:
    with pytest.raises(ValueError):
        decimal_to_micros("NaN")
    with pytest.raises(ValueError):
        decimal_to_micros("12,50")
