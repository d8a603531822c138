"""Platform adapters: the one interface the rebalancer uses to apply budgets to a
campaign's arms and fetch their hourly reports (`base`), the HTTP transport the
real-platform adapters send through (`http`), and the Meta, Google Ads and X
adapters (`meta`, `google_ads`, `x_ads`)."""

from jangkau.platforms.base import (
    ArmBudget,
    ArmTarget,
    BudgetResult,
    CampaignTarget,
    InvalidTarget,
    PermanentPlatformError,
    PlatformAdapter,
    PlatformError,
    PlatformReport,
    RateLimited,
    TransientPlatformError,
)

__all__ = [
    "ArmBudget",
    "ArmTarget",
    "BudgetResult",
    "CampaignTarget",
    "InvalidTarget",
    "PermanentPlatformError",
    "PlatformAdapter",
    "PlatformError",
    "PlatformReport",
    "RateLimited",
    "TransientPlatformError",
]
