"""The `jangkau` command, run for real in a subprocess against real services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jangkau.cli.output import EXIT_DENIED, EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from tests.conftest import TOKENS, write_tokens
from tests.rebalancer_support import FLIGHT_START

SERVICES = ("audience", "metrics", "budget", "sandbox")


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    from jangkau.runtime.launcher import Cluster

    root = tmp_path_factory.mktemp("cli")
    tokens = write_tokens(root / "tokens.json")
    cluster = Cluster(
        root / "data",
        SERVICES,
        free_ports=True,
        extra_env={"JANGKAU_TOKENS_FILE": str(tokens), "JANGKAU_GRACE_SECONDS": "1"},
    )
    cluster.start()
    yield cluster
    cluster.stop()


def jangkau(cluster, *args: str, token: str = TOKENS["alpha"]) -> subprocess.CompletedProcess:
    env = cluster.environment()
    env["JANGKAU_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "jangkau.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def upload_list(cluster, name: str, contacts: Path, *options: str) -> subprocess.CompletedProcess:
    """`jangkau audience upload-list` of a CSV file, with explicit consent."""
    return jangkau(
        cluster,
        "audience",
        "upload-list",
        "--name",
        name,
        "--purpose",
        "kabar kampanye",
        "--consent",
        "explicit",
        "--file",
        str(contacts),
        *options,
    )


@pytest.fixture(scope="module")
def made(cli_cluster, tmp_path_factory):
    """An audience, a contact-list audience and a campaign made through the CLI."""
    young = jangkau(
        cli_cluster,
        "audience",
        "create",
        "--name",
        "Jabar muda",
        "--region",
        "32",
        "--age",
        "17-29",
    )
    assert young.returncode == EXIT_OK, young.stderr
    older = jangkau(
        cli_cluster,
        "audience",
        "create",
        "--name",
        "Jabar dewasa",
        "--region",
        "32",
        "--age",
        "30-60",
    )
    contacts = tmp_path_factory.mktemp("contacts") / "relawan.csv"
    contacts.write_text(
        "phone,email\n"
        + "".join(f"0812{i:08d}, Relawan{i}@Example.ID\n" for i in range(150))
        + "12,not-an-email\n"
    )
    upload = upload_list(cli_cluster, "relawan", contacts, "--json")
    assert upload.returncode == EXIT_OK, upload.stderr
    list_id = json.loads(upload.stdout)["id"]
    listed = jangkau(cli_cluster, "audience", "create", "--name", "Relawan", "--list", list_id)
    assert listed.returncode == EXIT_OK, listed.stderr
    young_id, older_id, list_aud = young.stdout.strip(), older.stdout.strip(), listed.stdout.strip()
    campaign = jangkau(
        cli_cluster,
        "campaign",
        "create",
        "--name",
        "Pilbup Bogor",
        "--kind",
        "political",
        "--budget",
        "50000000",
        "--start",
        "2024-11-22",
        "--end",
        "2024-11-27",
        "--authorized",
        "--arm",
        f"meta-muda:meta:{young_id}",
        "--arm",
        f"google-dewasa:google:{older_id}",
        "--arm",
        f"tiktok-muda:tiktok:{young_id}",
        "--arm",
        f"meta-relawan:meta:{list_aud}",
    )
    assert campaign.returncode == EXIT_OK, campaign.stderr
    return {
        "young": young_id,
        "older": older_id,
        "list": list_aud,
        "campaign": campaign.stdout.strip(),
    }


def test_campaign_list_and_show(cli_cluster, made):
    listing = jangkau(cli_cluster, "campaign", "list")
    assert listing.returncode == EXIT_OK
    assert made["campaign"] in listing.stdout
    shown = jangkau(cli_cluster, "campaign", "show", made["campaign"], "--json")
    assert shown.returncode == EXIT_OK
    body = json.loads(shown.stdout)
    assert body["name"] == "Pilbup Bogor"
    assert len(body["arms"]) == 4


def test_campaign_update_changes_the_budget(cli_cluster, made):
    updated = jangkau(
        cli_cluster, "campaign", "update", made["campaign"], "--budget", "60000000", "--json"
    )
    assert updated.returncode == EXIT_OK, updated.stderr
    assert int(json.loads(updated.stdout)["total_budget_micros"]) == 60_000_000 * 1_000_000


def test_audience_size_flags_contact_lists_on_google_for_political_use(cli_cluster, made):
    size = jangkau(cli_cluster, "audience", "size", made["list"], "--kind", "political", "--json")
    assert size.returncode == EXIT_OK, size.stderr
    platforms = {p["platform"]: p for p in json.loads(size.stdout)["platforms"]}
    assert platforms["GOOGLE"].get("allowed", False) is False
    table = jangkau(cli_cluster, "audience", "size", made["young"])
    assert "voters:" in table.stdout


def test_audience_size_by_regency_lists_each_kabupaten_and_kota(cli_cluster, made):
    size = jangkau(cli_cluster, "audience", "size", made["young"], "--by-regency", "--json")
    assert size.returncode == EXIT_OK, size.stderr
    regencies = json.loads(size.stdout)["regencies"]
    assert len(regencies) == 27  # every kabupaten and kota of Jawa Barat
    table = jangkau(cli_cluster, "audience", "size", made["young"], "--by-regency")
    assert table.returncode == EXIT_OK, table.stderr
    top = table.stdout.split("kabupaten/kota")[1].splitlines()[2]
    assert top.split()[:3] == ["3201", "Kabupaten", "Bogor"]  # the most voters first


def test_audience_overlap_and_list(cli_cluster, made):
    overlap = jangkau(cli_cluster, "audience", "overlap", made["young"], made["older"], "--json")
    assert overlap.returncode == EXIT_OK, overlap.stderr
    body = json.loads(overlap.stdout)
    assert body["audience_ids"] == [made["young"], made["older"]]
    listing = jangkau(cli_cluster, "audience", "list")
    assert made["young"] in listing.stdout


def test_audience_upload_list_takes_the_lists_regions_and_country(cli_cluster, tmp_path):
    contacts = tmp_path / "diaspora.csv"
    contacts.write_text("phone\n6512 3456\n+62 812 3456 7890\n")
    upload = upload_list(
        cli_cluster,
        "diaspora",
        contacts,
        "--region",
        "Jawa Barat",
        "--region",
        "3273",
        "--country",
        "sg",
        "--json",
    )
    assert upload.returncode == EXIT_OK, upload.stderr
    body = json.loads(upload.stdout)
    assert body["region_codes"] == ["32", "3273"]
    assert body["default_country"] == "SG"
    assert int(body["accepted_phones"]) == 2 and not body.get("rejected")


def test_audience_upload_list_refuses_an_unknown_region_name(cli_cluster, tmp_path):
    contacts = tmp_path / "relawan.csv"
    contacts.write_text("phone\n0812 3456 7890\n")
    upload = upload_list(cli_cluster, "relawan", contacts, "--region", "Atlantis")
    assert upload.returncode == EXIT_USAGE
    assert "--region: no province or kabupaten/kota is named 'Atlantis'" in upload.stderr


def test_audience_export_writes_hashed_records(cli_cluster, made, tmp_path):
    out = tmp_path / "meta.csv"
    export = jangkau(
        cli_cluster, "audience", "export", made["list"], "--platform", "meta", "--out", str(out)
    )
    assert export.returncode == EXIT_OK, export.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 301  # header + one record per stored identifier (150 phones, 150 e-mails)
    assert "0812" not in out.read_text()


def test_allocate_is_a_dry_run_with_reasons(cli_cluster, made):
    at = FLIGHT_START.isoformat()
    allocate = jangkau(cli_cluster, "allocate", made["campaign"], "--at", at)
    assert allocate.returncode == EXIT_OK, allocate.stderr
    assert "dry run" in allocate.stdout
    assert "tiktok-muda" in allocate.stdout
    # The marginal return is shown per Rp 1,000,000 (the API gives it per rupiah).
    assert "marginal per Rp 1,000,000" in allocate.stdout
    same = jangkau(cli_cluster, "allocate", made["campaign"], "--at", at, "--json")
    arm = next(a for a in json.loads(same.stdout)["arms"] if a.get("marginal_return"))
    row = next(line for line in allocate.stdout.splitlines() if line.startswith(arm["arm_id"]))
    assert f"{arm['marginal_return'] * 1e6:.3g}" in row.split()
    decisions = jangkau(cli_cluster, "decisions", made["campaign"], "--json")
    assert json.loads(decisions.stdout) == []


def test_rebalance_then_decisions_and_report(cli_cluster, made):
    at = FLIGHT_START.isoformat()
    rebalance = jangkau(cli_cluster, "rebalance", "--campaign", made["campaign"], "--at", at)
    assert rebalance.returncode == EXIT_OK, rebalance.stderr + rebalance.stdout
    assert "applied" in rebalance.stdout
    decisions = jangkau(cli_cluster, "decisions", made["campaign"])
    assert decisions.returncode == EXIT_OK
    assert "ineligible" in decisions.stdout
    later = FLIGHT_START.replace(hour=FLIGHT_START.hour + 3).isoformat()
    jangkau(cli_cluster, "rebalance", "--campaign", made["campaign"], "--at", later)
    report = jangkau(cli_cluster, "report", made["campaign"], "--by", "platform", "--at", later)
    assert report.returncode == EXIT_OK, report.stderr
    assert "meta" in report.stdout


def test_a_rebalance_without_the_sandbox_market_says_how_to_start_it(cli_cluster, made):
    env = cli_cluster.environment()
    env["JANGKAU_TOKEN"] = TOKENS["alpha"]
    env["JANGKAU_SANDBOX_ADDR"] = "127.0.0.1:9"  # nothing listens there
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jangkau.cli.main",
            "rebalance",
            "--campaign",
            made["campaign"],
            "--dry-run",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_FAILED
    assert "sandbox: UNAVAILABLE" in result.stdout
    assert "the sandbox market at 127.0.0.1:9 did not answer" in result.stderr
    assert "jangkau up --with-sandbox" in result.stderr


def test_a_wrong_argument_fails_with_the_field_named(cli_cluster):
    bad_kind = jangkau(cli_cluster, "campaign", "create", "--kind", "banana")
    assert bad_kind.returncode == EXIT_USAGE
    assert "kind" in bad_kind.stderr
    bad_age = jangkau(cli_cluster, "audience", "create", "--name", "x", "--age", "40")
    assert bad_age.returncode == EXIT_USAGE
    assert bad_age.stderr.strip().startswith("error: --age")


def test_invalid_input_refused_by_the_service_names_the_field(cli_cluster, made):
    backwards = jangkau(
        cli_cluster,
        "campaign",
        "create",
        "--name",
        "x",
        "--kind",
        "civic",
        "--budget",
        "1000",
        "--start",
        "2024-11-27",
        "--end",
        "2024-11-20",
        "--arm",
        f"a:meta:{made['young']}",
    )
    assert backwards.returncode == EXIT_USAGE
    assert "campaign.flight" in backwards.stderr
    assert len(backwards.stderr.strip().splitlines()) == 1


def test_a_missing_object_exits_not_found(cli_cluster):
    missing = jangkau(cli_cluster, "campaign", "show", "cmp_0000000000000000")
    assert missing.returncode == EXIT_NOT_FOUND


def test_a_wrong_token_is_refused(cli_cluster):
    result = jangkau(cli_cluster, "campaign", "list", token="wrong-token")
    assert result.returncode == EXIT_DENIED
    assert "unauthenticated" in result.stderr


def test_a_viewer_cannot_create(cli_cluster):
    result = jangkau(
        cli_cluster,
        "audience",
        "create",
        "--name",
        "x",
        "--region",
        "32",
        token=TOKENS["alpha_viewer"],
    )
    assert result.returncode == EXIT_DENIED
    assert "permission_denied" in result.stderr


def offline(*args: str) -> subprocess.CompletedProcess:
    """The command with no services to reach."""
    return subprocess.run(
        [sys.executable, "-m", "jangkau.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_regions_finds_kabupaten_and_kota_by_name_and_code_without_a_service():
    by_name = offline("audience", "regions", "bandung")
    assert by_name.returncode == EXIT_OK, by_name.stderr
    listed = [line.split()[0] for line in by_name.stdout.splitlines()[2:]]
    assert listed == ["3204", "3217", "3273"]
    assert "Kota Bandung" in by_name.stdout
    # A district code finds its kabupaten/kota; words and province narrow it down.
    district = offline("audience", "regions", "327301", "--json")
    assert [r["name"] for r in json.loads(district.stdout)] == ["Kota Bandung"]
    kota = json.loads(offline("audience", "regions", "kota", "jawa barat", "--json").stdout)
    assert len(kota) == 9 and all(r["province"] == "32" for r in kota)
    nothing = offline("audience", "regions", "atlantis")
    assert nothing.returncode == EXIT_NOT_FOUND
    assert "no kabupaten/kota matches 'atlantis'" in nothing.stderr


def test_a_region_found_by_name_is_sized_by_the_service_with_its_voters(cli_cluster):
    found = json.loads(offline("audience", "regions", "kota", "bandung", "--json").stdout)
    assert [r["code"] for r in found] == ["3273"]

    def voters(*region: str) -> int:
        created = jangkau(cli_cluster, "audience", "create", "--name", "Kota Bandung", *region)
        assert created.returncode == EXIT_OK, created.stderr
        audience_id = created.stdout.split()[0]
        size = jangkau(cli_cluster, "audience", "size", audience_id, "--json")
        assert size.returncode == EXIT_OK, size.stderr
        return int(json.loads(size.stdout)["voters"])

    by_code = voters("--region", found[0]["code"])
    # Jawa Barat's 35,714,901 voters, as Kota Bandung's 2,591,763 of its 51,316,378 people.
    assert by_code == pytest.approx(35_714_901 * 2_591_763 / 51_316_378, abs=1)
    assert voters("--region", "kota  BANDUNG") == by_code
    assert voters("--region", "Jawa Barat") == 35_714_901
    assert voters("--region", "DKI Jakarta") == 8_252_897  # as KPU writes it


def test_a_region_name_that_fits_several_places_is_refused_with_them_listed():
    result = offline("audience", "create", "--name", "x", "--region", "bandung")
    assert result.returncode == EXIT_USAGE
    assert "--region: 'bandung' fits 3 places" in result.stderr
    assert "3273 Kota Bandung" in result.stderr
    unknown = offline("audience", "create", "--name", "x", "--region", "Atlantis")
    assert unknown.returncode == EXIT_USAGE
    assert "--region: no province or kabupaten/kota is named 'Atlantis'" in unknown.stderr


def test_a_closed_pipe_ends_the_command_without_a_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "jangkau.cli.main", "audience", "regions", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head` does once it has read enough
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) != EXIT_OK
    assert "Traceback" not in stderr


def test_tune_runs_a_resumable_study(tmp_path):
    import optuna

    storage = tmp_path / "tuning.sqlite3"
    args = [
        sys.executable,
        "-m",
        "jangkau.cli.main",
        "tune",
        "--trials",
        "1",
        "--hours",
        "24",
        "--scenario",
        "saturating",
        "--seeds-per-scenario",
        "1",
        "--storage",
        str(storage),
    ]
    for _ in range(2):
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == EXIT_OK, done.stderr
        assert "best settings" in done.stdout
    summaries = optuna.get_all_study_summaries(f"sqlite:///{storage}")
    # One study, resumed by the second run.
    assert [s.n_trials for s in summaries] == [2]
