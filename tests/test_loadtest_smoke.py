"""The Locust smoke: `python -m loadtests.run` for about 15 seconds against
services it starts on loopback, the code path of `make loadtest`. Run as a
subprocess because Locust monkey-patches the interpreter with gevent on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVERY_RPC = (
    "GetCampaign",
    "ListCampaigns",
    "GetCampaignSummary",
    "GetTimeseries",
    "Allocate",
    "ListDecisions",
    "EstimateSize",
    "IngestReports",
    "Rebalance",
)


@pytest.mark.slow
def test_a_short_load_test_calls_every_rpc_without_a_failure(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.run",
            "--seconds",
            "15",
            "--users",
            "8",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.strip()}
    for rpc in EVERY_RPC:
        assert rpc in rows, f"{rpc} never called:\n{output}"
        assert int(rows[rpc][1]) > 0, output
        assert rows[rpc][-1] == "0", f"{rpc} failed:\n{output}"
