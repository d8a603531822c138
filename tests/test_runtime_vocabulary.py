"""The shared words match the wire: each platform and campaign kind has the
number jangkau.v1 gives it, every number the wire defines has its word, and
budget's name-valued forms name the same members."""

from __future__ import annotations

from enum import Enum, IntEnum

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from jangkau.budget import domain as budget_domain
from jangkau.runtime.vocabulary import CampaignKind, Platform
from jangkau.v1 import common_pb2

CASES = [
    (Platform, common_pb2.Platform, budget_domain.Platform),
    (CampaignKind, common_pb2.CampaignKind, budget_domain.CampaignKind),
]


@pytest.mark.parametrize(("shared", "wire", "budget"), CASES)
def test_words_are_numbered_as_on_the_wire(
    shared: type[IntEnum], wire: EnumTypeWrapper, budget: type[Enum]
) -> None:
    defined = {name: number for name, number in wire.items() if number != 0}
    assert {member.name: member.value for member in shared} == defined
    assert {member.name for member in budget} == set(defined)
    assert all(member.value == member.name for member in budget)
