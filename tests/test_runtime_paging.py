"""Page tokens: what a List RPC issues it takes back; anything else names the field."""

import base64
import json

import pytest

from jangkau.runtime.errors import InvalidArgument
from jangkau.runtime.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, next_token, page_bounds


def forged(offset: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def test_a_token_issued_for_the_next_page_reads_back_as_its_offset():
    token = next_token(offset=200, size=100, returned=100)
    assert page_bounds(100, token) == (300, 100)


def test_a_short_page_is_the_last_one():
    assert next_token(offset=0, size=100, returned=99) == ""


def test_no_size_means_the_default_page():
    assert page_bounds(0, "") == (0, DEFAULT_PAGE_SIZE)


@pytest.mark.parametrize("size", [-1, MAX_PAGE_SIZE + 1])
def test_a_page_size_out_of_range_names_the_field(size):
    with pytest.raises(InvalidArgument) as refused:
        page_bounds(size, "", "page")
    assert refused.value.field == "page.page_size"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        forged(-1),
        forged("12"),
        forged(True),
        forged(1.5),
        # Past DuckDB's signed 64-bit OFFSET: refused here, not an INTERNAL from the query.
        forged(2**63),
        forged(10**30),
    ],
)
def test_a_token_this_service_did_not_issue_names_the_field(token):
    with pytest.raises(InvalidArgument) as refused:
        page_bounds(10, token, "page")
    assert refused.value.field == "page.page_token"
