"""The platforms' policy on political ads: what each platform allows for each
kind of campaign (DESIGN.md §2). One table, read by the budget service (which
arms may spend) and by the audience service (which audiences a platform takes),
so the two never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jangkau.runtime.vocabulary import CampaignKind, Platform


@dataclass(frozen=True)
class EligibilityRule:
    """What a platform allows for one campaign kind."""

    allowed: bool
    # The campaign must hold the platform's political-ad authorisation.
    needs_authorization: bool = False
    # Audiences built only from age, gender and location (no contact lists, no interests).
    demographic_only: bool = False
    # Why, as shown in an arm's explanation when the rule makes it ineligible.
    reason: str = ""

    def refuses_audience(self, uses_contact_lists: bool, demographic_only: bool) -> str | None:
        """What about an audience this rule refuses, if anything (the platform
        itself refused: see `allowed`)."""
        if self.demographic_only and uses_contact_lists:
            return "uses a contact list"
        if self.demographic_only and not demographic_only:
            return "is not demographic-only"
        return None


# Platform × campaign kind, applied before any optimisation (DESIGN.md §2). Sources:
# TikTok advertising policies ("Political content": no paid ads that promote or oppose
# candidates, parties or elections, incl. voter-turnout appeals; government bodies may
# be whitelisted, which we do not model); Google Ads "Political content" policy (election
# ads: only age, gender, location and contextual targeting, no Customer Match); Meta
# "Ads about social issues, elections or politics" (authorisation and "paid for by"
# disclaimer, which also covers civic ads such as turnout drives); X "Political content"
# policy (advertiser certification). CIVIC on X is treated like POLITICAL (appeals to
# vote are political content there); CIVIC on Google is not an election ad (no party,
# candidate or office holder) and is unrestricted. COMMERCIAL is allowed everywhere.
ELIGIBILITY: Mapping[tuple[Platform, CampaignKind], EligibilityRule] = {
    (Platform.TIKTOK, CampaignKind.POLITICAL): EligibilityRule(
        allowed=False, reason="TikTok bans paid political ads"
    ),
    (Platform.TIKTOK, CampaignKind.CIVIC): EligibilityRule(
        allowed=False, reason="TikTok bans paid ads about elections, including turnout drives"
    ),
    (Platform.TIKTOK, CampaignKind.COMMERCIAL): EligibilityRule(allowed=True),
    (Platform.GOOGLE, CampaignKind.POLITICAL): EligibilityRule(
        allowed=True,
        demographic_only=True,
        reason="Google election ads may target only age, gender and location (no contact lists)",
    ),
    (Platform.GOOGLE, CampaignKind.CIVIC): EligibilityRule(allowed=True),
    (Platform.GOOGLE, CampaignKind.COMMERCIAL): EligibilityRule(allowed=True),
    (Platform.META, CampaignKind.POLITICAL): EligibilityRule(
        allowed=True,
        needs_authorization=True,
        reason="Meta political ads need the advertiser's authorisation and 'paid for by'",
    ),
    (Platform.META, CampaignKind.CIVIC): EligibilityRule(
        allowed=True,
        needs_authorization=True,
        reason="Meta ads about elections (turnout, voter education) need authorisation",
    ),
    (Platform.META, CampaignKind.COMMERCIAL): EligibilityRule(allowed=True),
    (Platform.X, CampaignKind.POLITICAL): EligibilityRule(
        allowed=True, needs_authorization=True, reason="X political ads need certification"
    ),
    (Platform.X, CampaignKind.CIVIC): EligibilityRule(
        allowed=True,
        needs_authorization=True,
        reason="X treats appeals to vote as political content: certification needed",
    ),
    (Platform.X, CampaignKind.COMMERCIAL): EligibilityRule(allowed=True),
}
