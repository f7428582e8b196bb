"""An objective that returns NaN, inf, a string or nothing, raises, hangs past objective.timeout_s
or exhausts memory: each trial ends FAIL with its reason and kind, and the campaign goes on."""

import optuna
from fleet import ROOT, TESTS
from objectives_faults import MODES
from optuna.trial import TrialState

from engine.campaign import Coordinator
from engine.spec import parse_campaign
from engine.store.storage import open_storage
from engine.views.status import format_status, status_report

RAISE_LINE = next(
    i
    for i, line in enumerate((TESTS / "objectives_faults.py").read_text().splitlines(), 1)
    if "raise ValueError" in line
)

REASONS = {
    "nan": ("bad_value", "objective returned nan"),
    "inf": ("bad_value", "objective returned -inf"),
    "string": ("bad_value", "objective returned str '0.93 accuracy', not a number"),
    "none": ("bad_value", "objective returned nothing (None)"),
    "raise": (
        "raised",
        f"ValueError: labels and logits have different shapes (32,) vs (32, 7) (at objectives_faults.py:{RAISE_LINE})",
    ),
    "hang": ("timeout", "exceeded the trial time limit of 1.5 s"),
    "memory": (
        "oom",
        "out of memory: MemoryError: Unable to allocate 32.0 MiB for an array with shape (4194304,) "
        "and data type float64",
    ),
}


def test_every_kind_of_bad_objective_fails_its_trial_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}:{ROOT}")  # the worker process imports objectives_faults
    spec = parse_campaign(
        {
            "name": "misbehave",
            "objective": {"path": "objectives_faults:misbehave", "timeout_s": 1.5},
            "space": {"mode": {"type": "categorical", "choices": MODES}, "x": {"type": "fixed", "value": 3.0}},
            "fidelity": {"levels": {"only": {"epochs": 1}}},
            "sprints": [{"name": "all", "sampler": "grid", "fidelity": "only", "n_trials": len(MODES)}],
            "trial_retries": 1,
        }
    )
    url = f"journal://{tmp_path / 'journal.log'}"
    messages = []
    summary = Coordinator(spec, url, workers=1, runs_root=tmp_path, log=messages.append).run()

    assert summary["status"] == "finished"
    trials = optuna.load_study(study_name=summary["sprints"][0]["study"], storage=open_storage(url)).get_trials()
    assert sorted(t.params["mode"] for t in trials) == sorted(MODES)  # one trial each, none retried
    for t in trials:
        mode = t.params["mode"]
        if mode == "ok":
            assert t.state == TrialState.COMPLETE and t.value == 9.0
            continue
        kind, reason = REASONS[mode]
        assert t.state == TrialState.FAIL, mode
        assert (t.user_attrs["fail_kind"], t.user_attrs["fail_reason"]) == (kind, reason)
        assert "retried" not in t.user_attrs  # the objective failed, not the worker: nothing to re-run
    # The worker survived all of them (no restart) and status tells the kinds apart.
    assert not any("restarted" in m for m in messages), messages
    sprint = summary["sprints"][0]
    assert sprint["fail_kinds"] == {"bad_value": 4, "raised": 1, "timeout": 1, "oom": 1}
    assert (
        "    failed: 4 bad value, 1 oom, 1 raised, 1 timeout; 0 queued again"
        in format_status(status_report(open_storage(url), "misbehave")).splitlines()
    )
    assert summary["best"]["value"] == 9.0
