"""Words every service uses, numbered as jangkau.v1 numbers them on the wire:
the ad platforms and the kinds of campaign. (Budget keeps its own name-valued
forms, as it keeps all its enums: its store and settings hold the names.)"""

from __future__ import annotations

from enum import IntEnum


class Platform(IntEnum):
    """The ad platforms, numbered as jangkau.v1.Platform."""

    META = 1
    GOOGLE = 2
    X = 3
    TIKTOK = 4


class CampaignKind(IntEnum):
    """What a campaign is for, numbered as jangkau.v1.CampaignKind; the platforms'
    political-ad rules depend on it."""

    POLITICAL = 1
    CIVIC = 2
    COMMERCIAL = 3
