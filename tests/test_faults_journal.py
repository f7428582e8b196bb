"""A journal torn by a crash or a full disk (cut to 60%), or with a garbage line appended: every command
refuses with exit 5 and says what to run; nothing is appended after the bad line; `hpo-tui repair` keeps
a backup, cuts the file back to its last complete record, and the campaign then resumes and finishes
with every complete trial kept."""

import json
from pathlib import Path

import optuna
import pytest
from enginekit import branin_campaign, hpo_tui, write_toml
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from engine.errors import EXIT_CORRUPT_STORAGE, CorruptStorage
from engine.store.journal_repair import GuardedJournalBackend, repair_journal, scan
from engine.store.storage import open_storage

pytestmark = pytest.mark.xdist_group("journal-faults")


def complete_trials(journal: Path) -> dict[tuple[str, int], tuple[dict, float]]:
    """(study, number) -> (params, value) of every COMPLETE trial in a journal."""
    storage = open_storage(f"journal://{journal}", heartbeat=False, create=False)
    found = {}
    for study in storage.get_all_studies():
        for trial in storage.get_all_trials(study._study_id, states=(TrialState.COMPLETE,)):
            found[(study.study_name, trial.number)] = (trial.params, trial.value)
    return found


def finished_campaign(tmp_path: Path, name: str) -> tuple[Path, Path]:
    campaign = write_toml(tmp_path / f"{name}.toml", branin_campaign(name))
    out = hpo_tui("run", str(campaign), "--workers", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    return campaign, tmp_path / "runs" / name / "journal.log"


def assert_refused(out, journal: Path, kind: str, target: str) -> None:
    assert out.returncode == EXIT_CORRUPT_STORAGE, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"journal {journal} is damaged after record " in out.stderr
    assert f"{kind}); run `hpo-tui repair {target}` (a backup is kept)" in out.stderr


def test_a_journal_cut_mid_line_is_refused_then_repaired_and_the_campaign_finishes(tmp_path):
    campaign, journal = finished_campaign(tmp_path, "torn")
    intact = journal.read_bytes()
    journal.write_bytes(intact[: len(intact) * 60 // 100])  # what a crash or a full disk mid-write leaves
    if journal.read_bytes().endswith(b"\n"):  # cut exactly at a line end: cut one byte more
        journal.write_bytes(journal.read_bytes()[:-1])
    torn = journal.read_bytes()

    for args, target in (
        (("status", "torn"), "torn"),
        (("approve", "torn", "--reject"), "torn"),
        (("run", str(campaign), "--workers", "0"), str(campaign)),
        (("status", "torn", "--storage", f"journal://{journal}"), "torn --storage URL"),
    ):
        assert_refused(hpo_tui(*args, cwd=tmp_path), journal, "a partial line", target)
    assert journal.read_bytes() == torn, "nothing may be appended after the partial line"

    damage = scan(journal)
    kept_before = complete_trials_of_prefix(tmp_path, torn[: damage.offset])

    repaired = hpo_tui("repair", "torn", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    backups = list(journal.parent.glob("journal.log.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == torn
    assert journal.read_bytes() == torn[: damage.offset]
    assert f"kept {damage.good_records} complete records; dropped 1 line(s), {len(torn) - damage.offset} bytes" in (
        repaired.stdout
    )
    assert "dropped: 1 partial line" in repaired.stdout

    resumed = hpo_tui("run", str(campaign), "--workers", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = hpo_tui("status", "torn", "--json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "finished"
    after = complete_trials(journal)
    for key, (params, value) in kept_before.items():  # every complete trial kept, unchanged
        assert after[key] == (params, value), key
    assert len(after) >= len(kept_before)
    assert scan(journal) is None


def complete_trials_of_prefix(tmp_path: Path, data: bytes) -> dict:
    copy = tmp_path / "prefix-copy" / "journal.log"
    copy.parent.mkdir()
    copy.write_bytes(data)
    return complete_trials(copy)


def test_a_garbage_line_is_refused_and_repair_keeps_every_trial(tmp_path):
    _, journal = finished_campaign(tmp_path, "garbage")
    before = complete_trials(journal)
    good = journal.read_bytes()
    with open(journal, "ab") as handle:
        handle.write(b"\x00\x17 not json at all\n")
        handle.write(b'{"op_code": 8, "worker_id": "w", "trial_id": 3, "user_attr": {"k": 1}}\n')

    assert_refused(hpo_tui("status", "garbage", cwd=tmp_path), journal, "an unparsable line", "garbage")
    assert_refused(hpo_tui("cache", "garbage", cwd=tmp_path), journal, "an unparsable line", "garbage")

    repaired = hpo_tui("repair", "garbage", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert "dropped 2 line(s)" in repaired.stdout
    assert "1 set_trial_user_attr, 1 unparsable line" in repaired.stdout
    assert "trial #" in repaired.stdout  # the record after the garbage named a trial: say which
    assert journal.read_bytes() == good
    assert complete_trials(journal) == before
    status = hpo_tui("status", "garbage", cwd=tmp_path)
    assert status.returncode == 0 and "finished" in status.stdout.splitlines()[0]

    again = hpo_tui("repair", "garbage", cwd=tmp_path)
    assert again.returncode == 0 and "is intact" in again.stdout
    assert len(list(journal.parent.glob("journal.log.bak-*"))) == 1


def test_garbage_in_the_middle_is_met_during_replay(tmp_path):
    journal = tmp_path / "j.log"
    storage = JournalStorage(GuardedJournalBackend(str(journal)))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b"{oops\n"] + lines[2:]))
    with pytest.raises(CorruptStorage, match=r"damaged after record 2 \(byte \d+: an unparsable line\)"):
        open_storage(f"journal://{journal}", create=False)


def test_nothing_is_appended_after_a_line_torn_while_open(tmp_path):
    """A process that opened a sound journal refuses to append once another left it torn."""
    journal = tmp_path / "j.log"
    storage = JournalStorage(GuardedJournalBackend(str(journal)))
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with open(journal, "ab") as handle:
        handle.write(b'{"op_code": 4, "worker')  # another writer died mid-append
    torn = journal.read_bytes()
    with pytest.raises(CorruptStorage, match="a partial line"):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert journal.read_bytes() == torn


def test_repair_of_an_intact_journal_changes_nothing(tmp_path):
    journal = tmp_path / "j.log"
    storage = JournalStorage(GuardedJournalBackend(str(journal)))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    data = journal.read_bytes()
    report = repair_journal(journal)
    assert report.backup is None and report.kept_records == len(data.splitlines())
    assert journal.read_bytes() == data and list(tmp_path.glob("*.bak-*")) == []


def test_repair_names_every_dropped_operation_by_optunas_codes(tmp_path):
    """The report names a dropped record by Optuna's JournalOperation (DISCARD_TRIALS, 10, included)."""
    from optuna.storages.journal._storage import JournalOperation

    journal = tmp_path / "j.log"
    storage = JournalStorage(GuardedJournalBackend(str(journal)))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with open(journal, "ab") as handle:
        handle.write(b"{torn\n")
        for op in JournalOperation:
            handle.write(json.dumps({"op_code": int(op), "worker_id": "w", "trial_id": 0}).encode() + b"\n")
        handle.write(b'{"op_code": 42, "worker_id": "w"}\n')
    report = repair_journal(journal)
    expected = {op.name.lower(): 1 for op in JournalOperation} | {"unparsable line": 1, "op 42": 1}
    assert report.operations == expected
    assert report.operations["discard_trials"] == 1
