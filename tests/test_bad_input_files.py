"""Malformed or hostile campaign files (tests/bad_campaigns/): `hpo-tui validate` gives one clear
message per problem — the file, the key path and the reason — and exits 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import EXIT_BAD_INPUT
from tui.cli import main

CORPUS = Path(__file__).parent / "bad_campaigns"
HPO = str(Path(sys.executable).with_name("hpo-tui"))

# file -> the problems `hpo-tui validate` must print, as "key: reason" ("<file>" when the file as a whole is wrong)
EXPECTED = {
    # wrong types
    "wrong_type_bound": [
        "space.x2.high: Input should be a valid number, unable to parse string as a number (got 'fifteen')"
    ],
    "wrong_type_n_trials": [
        "sprints.0.n_trials: Input should be a valid integer, unable to parse string as an integer (got 'many')"
    ],
    "wrong_type_workers": ["workers: Input should be a valid integer, got a number with a fractional part (got 2.5)"],
    "wrong_type_param_kind": ["space.x2: type must be one of float, int, categorical, fixed (got 'double')"],
    # unknown keys (typos)
    "unknown_key_top": ["worker: unknown key"],
    "unknown_key_param": ["space.x2.logg: unknown key"],
    # reversed, empty and non-finite bounds
    "reversed_bounds": ["space.x2: low (15) must be below high (0)"],
    "reversed_int_bounds": ["space.layers: low (8) must be below high (2)"],
    "equal_bounds": ["space.x2: low (3) must be below high (3)"],
    "nonfinite_inf": ["space.x2: high must be a finite number, got inf"],
    "nonfinite_nan": ["space.x2: low must be a finite number, got nan"],
    # log ranges that include zero or negatives
    "log_includes_zero": ["space.wd: a log range must be positive, but low is 0"],
    "log_negative": ["space.wd: a log range must be positive, but low is -0.001"],
    "log_int_zero": ["space.batch: a log range must be positive, but low is 0"],
    # duplicates (TOML itself refuses them; the message names the key)
    "duplicate_parameter": ["space.x1: declared twice (again at line 18): each parameter and table may appear once"],
    "duplicate_key": ["space.x2.low: set twice (again at line 21: low = 1.0)"],
    # enormous values
    "enormous_bound": ["space.x2: high 1e+300 is beyond ±1e+15"],
    "enormous_int": ["space.x2: high 1.23457e+29 is beyond ±1e+15"],
    "enormous_n_trials": ["sprints.0.n_trials: Input should be less than or equal to 1000000 (got 1000000000)"],
    "enormous_retries": ["trial_retries: Input should be less than or equal to 10 (got 1000)"],
    # objectives that do not import
    "objective_module_missing": [
        "objective.path: cannot import module 'no_such_package.train': "
        "ModuleNotFoundError: No module named 'no_such_package'"
    ],
    "objective_function_missing": [
        "objective.path: module 'engine.workloads.functions' has no attribute 'no_such_function'"
    ],
    "objective_import_error": [
        "objective.path: cannot import module 'objectives_broken': "
        "ModuleNotFoundError: No module named 'fancy_accelerator_that_is_not_installed'"
    ],
    "objective_not_a_path": ["objective.path: must look like 'package.module:function', got 'train.py'"],
    # not a campaign at all
    "toml_syntax": ["<file>: TOML syntax: Invalid value (at line 25, column 12): n_trials = = 10"],
    "not_utf8": ["<file>: not UTF-8 text"],
    "empty": [f"{key}: Field required" for key in ("name", "objective", "space", "fidelity", "sprints")],
}


def test_the_corpus_and_the_expectations_match():
    assert sorted(p.stem for p in CORPUS.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_reports_each_bad_file_exactly(name, capsys):
    path = CORPUS / f"{name}.toml"
    assert main(["validate", str(path)]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    problems = EXPECTED[name]
    assert out == ""
    assert err.splitlines() == [f"invalid campaign: {len(problems)} problem(s)"] + [f"{path}: {p}" for p in problems]


def test_huge_files_and_directories_are_refused_without_reading_them(tmp_path, capsys):
    huge = tmp_path / "huge.toml"
    with open(huge, "wb") as f:
        f.truncate(512 * 1024 * 1024)  # sparse: 512 MiB that cost nothing on disk
    for target, reason in (
        (huge, "file is larger than 1024 KiB: not a campaign file"),
        (tmp_path, "cannot read: Is a directory"),
        (tmp_path / "absent.toml", "file not found"),
    ):
        assert main(["validate", str(target)]) == EXIT_BAD_INPUT
        assert capsys.readouterr().err.splitlines()[1] == f"{target}: <file>: {reason}"


def test_the_console_script_exits_2_with_no_traceback():
    path = CORPUS / "reversed_bounds.toml"
    proc = subprocess.run([HPO, "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"invalid campaign: 1 problem(s)\n{path}: space.x2: low (15) must be below high (0)\n"
