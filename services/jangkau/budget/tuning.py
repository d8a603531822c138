"""Optuna tuning of the allocation policy's settings (DESIGN.md §4).

Each trial replays simulated 60-day campaigns (every scenario of jangkau.market, on
TUNING_SEEDS, never the benchmark's BENCHMARK_SEEDS) with one candidate PolicySettings
and scores it by the median, over those campaigns, of the policy's true expected
conversions as a percentage of the oracle's. The study lives in an SQLite file
(Optuna's RDB storage) and is loaded if it exists, so an interrupted run resumes where
it stopped. `write_defaults` stores the best settings in tuned_defaults.json, which
`policy.default_settings()` reads: the tuned best is the default a campaign overrides.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import optuna

from jangkau.budget.policy import (
    SETTING_NAMES,
    TUNED_DEFAULTS_PATH,
    PolicySettings,
    default_settings,
)
from jangkau.market import SCENARIOS, Market
from jangkau.market.replay import TUNING_SEEDS, JangkauAllocator, OracleAllocator, replay

STUDY_NAME = "jangkau-policy"

# Search space: (low, high, log scale).
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    "prior_strength": (0.5, 50.0, True),
    "discount": (0.95, 0.9995, False),
    "exploration_floor": (0.0, 0.05, False),
    "max_change_percent": (5.0, 50.0, False),
    "overdispersion": (1.0, 8.0, True),
    "s_shaped_prior": (0.01, 0.5, True),
}


def _oracle(job: tuple[str, int, int | None]) -> float:
    name, seed, hours = job
    market = Market(SCENARIOS[name](), seed)
    return replay(market, OracleAllocator(market), hours).expected


def _policy(job: tuple[str, int, int | None, dict[str, float]]) -> float:
    name, seed, hours, values = job
    market = Market(SCENARIOS[name](), seed)
    allocator = JangkauAllocator(market.campaign, PolicySettings(**values), seed)
    return replay(market, allocator, hours).expected


def tune(
    storage_path: Path,
    trials: int,
    timeout_seconds: float | None,
    show_progress: bool,
    *,
    scenarios: Sequence[str] = tuple(SCENARIOS),
    seeds_per_scenario: int = 2,
    hours: int | None = None,
    workers: int = 2,
) -> PolicySettings:
    """Run `trials` more trials (or until the timeout) and return the best settings so far."""
    storage_path = Path(storage_path)
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    # The progress bar and one line per trial say enough.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{storage_path}",
        load_if_exists=True,
        direction="maximize",
    )
    # Seeded by the trials so far: a resumed run is reproducible and does not repeat them.
    study.sampler = optuna.samplers.TPESampler(seed=len(study.trials))
    campaigns = [(n, s, hours) for n in scenarios for s in TUNING_SEEDS[:seeds_per_scenario]]
    # The oracle does not depend on the settings: replayed once, kept in the study.
    key = f"oracle:{','.join(f'{n}/{s}/{h}' for n, s, h in campaigns)}"
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    run = pool.map if pool else map
    try:
        if key not in study.user_attrs:
            study.set_user_attr(key, list(run(_oracle, campaigns)))
        oracle = study.user_attrs[key]

        def objective(trial: optuna.Trial) -> float:
            values = {
                name: trial.suggest_float(name, low, high, log=log)
                for name, (low, high, log) in SEARCH_SPACE.items()
            }
            got = list(run(_policy, [(n, s, h, values) for n, s, h in campaigns]))
            pct = [100.0 * g / o for g, o in zip(got, oracle, strict=True)]
            for name in scenarios:
                per = [p for p, (n, _, _) in zip(pct, campaigns, strict=True) if n == name]
                trial.set_user_attr(name, statistics.median(per))
            return statistics.median(pct)

        callbacks = [_print_progress] if show_progress else []
        study.optimize(
            objective,
            n_trials=trials,
            timeout=timeout_seconds,
            show_progress_bar=show_progress,
            callbacks=callbacks,
        )
    finally:
        if pool:
            pool.shutdown()
    return best_settings(study)


def best_settings(study: optuna.Study) -> PolicySettings:
    """The settings of the study's best trial (the current defaults before any trial)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return default_settings()
    params = study.best_trial.params
    return PolicySettings(**{k: float(v) for k, v in params.items() if k in SETTING_NAMES})


def _print_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    scenarios = " ".join(f"{k}={v:.1f}" for k, v in trial.user_attrs.items())
    best = study.best_value if study.best_trial else float("nan")
    print(
        f"trial {trial.number}: median %oracle={trial.value:.2f} ({scenarios}); best={best:.2f}",
        file=sys.stderr,
        flush=True,
    )


def write_defaults(settings: PolicySettings, note: dict[str, object] | None = None) -> Path:
    """Store `settings` as the tuned defaults (tuned_defaults.json); returns its path."""
    stored: dict[str, object] = dict(asdict(settings))
    if note:
        stored["tuning"] = note
    TUNED_DEFAULTS_PATH.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    logging.getLogger(__name__).info("tuned defaults written to %s", TUNED_DEFAULTS_PATH)
    return TUNED_DEFAULTS_PATH
