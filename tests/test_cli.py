"""The command line a user types: validate, run headless, status, approve refusals."""

from enginekit import branin_campaign, hpo_tui, write_toml


def test_validate_ok_and_bad(tmp_path):
    good = write_toml(tmp_path / "good.toml", branin_campaign("good"))
    out = hpo_tui("validate", str(good), cwd=tmp_path)
    assert out.returncode == 0 and "OK" in out.stdout
    bad_data = branin_campaign("bad")
    bad_data["space"]["x1"] = {"type": "float", "low": 0.0, "high": 1.0, "log": True}
    bad_data["workers"] = -1
    bad = write_toml(tmp_path / "bad.toml", bad_data)
    out = hpo_tui("validate", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert f"{bad}: space.x1: a log range must be positive, but low is 0" in out.stderr
    assert f"{bad}: workers: Input should be greater than or equal to 1" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_headless_then_status_and_resume_is_a_no_op(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", branin_campaign("cli", workers=1))
    out = hpo_tui("run", str(campaign), cwd=tmp_path, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "campaign finished" in out.stdout
    assert "gate 0: approve by" in out.stdout and "gate 1: approve by" in out.stdout
    status = hpo_tui("status", "cli", cwd=tmp_path)
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].startswith("campaign cli: finished, sprint 3/3, metric regret (minimize)")
    assert any(line.split()[:2] == ["3", "full"] for line in lines)
    again = hpo_tui("run", str(campaign), cwd=tmp_path)
    assert again.returncode == 0 and "campaign already finished" in again.stdout


def test_storage_override_and_missing_campaign(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", branin_campaign("other"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    out = hpo_tui("run", str(campaign), "--storage", url, "--workers", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert hpo_tui("status", "other", "--storage", url, cwd=tmp_path).returncode == 0
    missing = hpo_tui("status", "other", cwd=tmp_path)  # default journal: not there
    assert missing.returncode == 2 and "no campaign 'other'" in missing.stderr
