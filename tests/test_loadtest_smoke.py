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


def succeeded(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Runs this interpreter with `args` from the repository root; it must exit 0."""
    run = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    return run, output


@pytest.mark.slow
def test_a_short_load_test_calls_every_rpc_without_a_failure(tmp_path: Path) -> None:
    run, output = succeeded(
        "-m",
        "loadtests.run",
        "--seconds",
        "15",
        "--users",
        "8",
        "--data-dir",
        str(tmp_path / "data"),
    )
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.strip()}
    for rpc in EVERY_RPC:
        assert rpc in rows, f"{rpc} never called:\n{output}"
        assert int(rows[rpc][1]) > 0, output
        assert rows[rpc][-1] == "0", f"{rpc} failed:\n{output}"


@pytest.mark.slow
def test_the_load_benchmark_alternates_its_phases_and_pools_them() -> None:
    run, output = succeeded(
        "bench/load.py", "--seconds", "8", "--rounds", "2", "--users", "6", "--spread-echo"
    )
    lines = run.stdout.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    assert [line.split(":")[0] for line in rounds] == ["round 1", "round 2"], output
    # Each phase's table pools its two rounds of 4 s (and the users' stop grace).
    phases = [line for line in lines if line.startswith("== ")]
    assert [p.split()[1] for p in phases] == ["echo:", "mixed:", "echo"], output
    assert all(float(p.rsplit(",", 1)[1].split()[0]) >= 8 for p in phases), output
    # The diagnostic echo reached each of its three servers, and says how it compares.
    cpu = [line for line in lines if line.startswith("cpu cores:")][2]
    served = dict(field.split("=") for field in cpu.split(";")[0].split()[2:])
    assert set(served) == {"locust", "echo-1", "echo-2", "echo-3"}, output
    assert all(float(served[f"echo-{i}"]) > 0 for i in (1, 2, 3)), output
    assert any(line.startswith("spread echo: ") for line in lines), output
    last = lines[-1].split()
    assert last[:2] == ["load", "rps:"] and last[-1] == "failures=0", output
    assert all(field.partition("=")[2] for field in last[2:]), output
