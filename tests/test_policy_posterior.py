"""The evidence statistics and the posterior of the response curves."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from jangkau.budget import policy
from jangkau.budget.policy import (
    KAPPA_GRID_MICROS,
    SETTING_NAMES,
    TUNED_DEFAULTS_PATH,
    ArmSpec,
    Evidence,
    PolicySettings,
    default_settings,
    delivery_ratio,
    posterior,
    settings_with_overrides,
)


def test_kappa_grid_spans_small_test_campaigns_to_pilkada_arms() -> None:
    grid = np.asarray(KAPPA_GRID_MICROS)
    assert grid[0] <= 1e8 and grid[-1] >= 1e14
    assert 24 <= grid.size <= 32
    assert np.allclose(grid[1:] / grid[:-1], grid[1] / grid[0])


def test_evidence_from_history_matches_hand_computation() -> None:
    spend = np.array([[2e8, 0.0, 5e8], [1e8, 1e8, 1e8]])
    counts = np.array([[3.0, 1.0, 4.0], [0.0, 2.0, 1.0]])
    kappas = (1e8, 1e9)
    evidence = Evidence.from_history(spend, counts, 0.9, kappas, s_kappas=kappas)
    weights = [0.81, 0.9, 1.0]
    for i in range(2):
        for k, kappa in enumerate(kappas):
            exposure = sum(
                w * (1 - math.exp(-x / kappa)) for w, x in zip(weights, spend[i], strict=True)
            )
            log_shape = sum(
                w * y * math.log(1 - math.exp(-x / kappa))
                for w, x, y in zip(weights, spend[i], counts[i], strict=True)
                if x > 0
            )
            assert evidence.exposure[i, k] == pytest.approx(exposure)
            assert evidence.log_shape[i, k] == pytest.approx(log_shape)
        assert evidence.count[i] == pytest.approx(
            sum(w * y for w, y in zip(weights, counts[i], strict=True))
        )
        assert evidence.hours[i] == pytest.approx(sum(weights))
    z2 = (5e8 / 1e9) ** 2
    assert evidence.s_exposure is not None
    assert evidence.s_exposure[0, 1] == pytest.approx(0.81 * 0.04 / 1.04 + 1.0 * z2 / (1 + z2))


def test_evidence_updated_hour_by_hour_equals_from_history() -> None:
    rng = np.random.default_rng(1)
    spend = rng.uniform(0, 1e9, (3, 40)) * (rng.random((3, 40)) < 0.9)
    counts = rng.poisson(5, (3, 40)).astype(float)
    running = Evidence.empty(3)
    for t in range(40):
        running = running.updated(spend[:, t], counts[:, t], 0.97)
    whole = Evidence.from_history(spend, counts, 0.97)
    for name in ("exposure", "log_shape", "count", "hours", "s_exposure", "s_log_shape"):
        assert np.allclose(getattr(running, name), getattr(whole, name))


def test_posterior_concentrates_on_the_true_curve() -> None:
    rng = np.random.default_rng(0)
    theta, kappa = 30.0, 4e11
    spend = kappa * np.exp(rng.normal(-0.5, 0.4, (1, 3000)))
    counts = rng.poisson(theta * -np.expm1(-spend / kappa))
    evidence = Evidence.from_history(spend, counts, 0.999)
    arm = [ArmSpec("a", prior_theta=10.0, prior_kappa_micros=1e10)]  # a poor guess
    post = posterior(arm, evidence, PolicySettings())
    mean, sd = post.theta_moments()
    assert mean[0] == pytest.approx(theta, rel=0.15)
    assert sd[0] < 0.15 * theta
    near = np.abs(np.log(post.kappas_micros / kappa)) < math.log(2.0)
    assert post.weights[0, near & ~post.s_shaped].sum() > 0.8


def test_posterior_recognises_an_s_shaped_arm() -> None:
    rng = np.random.default_rng(2)
    theta, kappa = 20.0, 1e9
    spend = kappa * np.exp(rng.normal(0.0, 0.6, (1, 2000)))
    z2 = (spend / kappa) ** 2
    counts = rng.poisson(theta * z2 / (1 + z2))
    post = posterior(
        [ArmSpec("a", prior_theta=20.0, prior_kappa_micros=1e9)],
        Evidence.from_history(spend, counts, 0.999),
        PolicySettings(),
    )
    assert post.weights[0, post.s_shaped].sum() > 0.9


def test_without_evidence_the_posterior_is_the_prior() -> None:
    post = posterior(
        [ArmSpec("a", prior_theta=7.0, prior_kappa_micros=3e9)],
        Evidence.empty(1),
        PolicySettings(prior_strength=4.0),
    )
    mean, sd = post.theta_moments()
    assert mean[0] == pytest.approx(7.0)
    assert sd[0] == pytest.approx(7.0 / 2.0)


def test_sample_is_reproducible_by_seed() -> None:
    arms = [ArmSpec(f"a{i}", prior_theta=5.0, prior_kappa_micros=1e9) for i in range(20)]
    post = posterior(arms, Evidence.empty(20), PolicySettings())
    first = post.sample(np.random.default_rng(11))
    again = post.sample(np.random.default_rng(11))
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)


def test_delivery_ratio_shows_a_disapproved_arm() -> None:
    budgets = np.full((2, 24), 1e9)
    spend = np.vstack([np.full(24, 9e8), np.r_[np.full(12, 1e9), np.zeros(12)]])
    ratio = delivery_ratio(budgets, spend, 0.8)
    assert 0.9 < ratio[0] < 0.95  # shrunk a little towards full delivery
    assert ratio[1] < 0.5


def test_default_settings_read_the_tuned_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"discount": 0.97, "prior_strength": 3.0, "tuning": {"trials": 1}}))
    monkeypatch.setattr(policy, "TUNED_DEFAULTS_PATH", path)
    settings = default_settings()
    assert settings.discount == 0.97 and settings.prior_strength == 3.0
    assert settings.max_change_percent == PolicySettings().max_change_percent


def test_campaign_override_replaces_only_non_zero_settings() -> None:
    base = PolicySettings(discount=0.98, max_change_percent=30.0)
    chosen = settings_with_overrides({"discount": 0.0, "max_change_percent": 20.0}, base)
    assert chosen.discount == 0.98 and chosen.max_change_percent == 20.0


def test_committed_tuned_defaults_are_valid_settings() -> None:
    assert isinstance(default_settings(), PolicySettings)
    # Every setting comes from the committed file, none from the built-in defaults.
    stored = json.loads(TUNED_DEFAULTS_PATH.read_text())
    assert asdict(default_settings()) == {name: stored[name] for name in SETTING_NAMES}
