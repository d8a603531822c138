"""The typed Python client of jangkau: one object per service, every call with a
deadline, UNAVAILABLE retried with backoff, the caller's token on every call.

    from jangkau.client import Jangkau
    with Jangkau.from_env() as jk:
        campaign = jk.budget.get_campaign("cmp_…")
"""

from jangkau.client.clients import AudienceClient, BudgetClient, Jangkau, MetricsClient

__all__ = ["AudienceClient", "BudgetClient", "Jangkau", "MetricsClient"]
