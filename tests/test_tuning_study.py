"""Optuna tuning: the study persists in SQLite and a second run resumes it; the best
settings become the defaults."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import optuna
import pytest

from jangkau.budget import policy, tuning
from jangkau.budget.policy import PolicySettings, default_settings
from jangkau.budget.tuning import STUDY_NAME, tune, write_defaults

TINY = {"scenarios": ("saturating",), "seeds_per_scenario": 1, "hours": 12, "workers": 1}


def stored_trials(path: Path) -> int:
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{path}")
    return len(study.trials)


def test_tuning_resumes_from_its_storage(tmp_path: Path) -> None:
    storage = tmp_path / "study.db"
    tune(storage, 2, None, False, **TINY)
    assert stored_trials(storage) == 2
    best = tune(storage, 2, None, False, **TINY)
    assert stored_trials(storage) == 4
    assert isinstance(best, PolicySettings)
    # The best of all four trials, the resumed run's included.
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{storage}")
    assert asdict(best) == {**asdict(PolicySettings()), **study.best_trial.params}


def test_tuning_shows_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tune(tmp_path / "study.db", 1, None, True, **TINY)
    assert "trial 0: median %oracle=" in capsys.readouterr().err


def test_tuned_settings_become_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tuned_defaults.json"
    monkeypatch.setattr(policy, "TUNED_DEFAULTS_PATH", path)
    monkeypatch.setattr(tuning, "TUNED_DEFAULTS_PATH", path)
    chosen = PolicySettings(prior_strength=3.5, discount=0.985, max_change_percent=25.0)
    assert write_defaults(chosen, {"trials": 4}) == path
    assert default_settings() == chosen
    assert json.loads(path.read_text())["tuning"] == {"trials": 4}
