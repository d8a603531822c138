"""Amounts of money as people read them: integer micros of a currency, written
in its units (Rupiah as "Rp 96,154"). The wire and the store keep micros."""

from __future__ import annotations

MICROS_PER_UNIT = 1_000_000


def money(micros: int | float, currency: str = "IDR") -> str:
    units = micros / MICROS_PER_UNIT
    if currency == "IDR":
        return f"Rp {units:,.0f}"
    return f"{units:,.2f} {currency}"
