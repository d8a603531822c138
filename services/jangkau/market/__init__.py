"""The simulated market: arms with hidden response curves, hourly delivery and
reports, an oracle that knows the curves (`simulator`); the scenarios it draws
campaigns from (`scenarios`); replaying a campaign with an allocator (`replay`) and the
baseline allocators the benchmark compares against (`baselines`).

Used by the tests, the demo's sandbox platform, the Optuna tuner and the benchmark.
"""

from jangkau.market.scenarios import SCENARIOS, Scenario
from jangkau.market.simulator import CampaignSetup, HillCurves, HourDelivery, Market

__all__ = ["SCENARIOS", "CampaignSetup", "HillCurves", "HourDelivery", "Market", "Scenario"]
