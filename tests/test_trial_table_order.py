"""The trial table's incremental re-sort gives exactly the order of a full sort, for every column."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from engine.views.snapshot import TrialRow
from tui.trial_table import BASE_COLUMNS, NOTE_COLUMN, STAGE_COLUMNS, _param_column, resort_rows, sort_rows

STATES = ("RUNNING", "WAITING", "COMPLETE", "PRUNED", "FAIL")
COLUMNS = [
    *BASE_COLUMNS,
    *STAGE_COLUMNS,
    _param_column("lr", 0),
    _param_column("kind", 1),
    _param_column("layers", 2),
    NOTE_COLUMN,
]


def random_row(rng: random.Random, number: int) -> TrialRow:
    state = rng.choice(STATES)
    finished = state not in ("RUNNING", "WAITING")
    kind = rng.choice(["adam", "3", 3, 1.5, None])  # a categorical mixing text and numbers, sometimes unset
    params: tuple[tuple[str, object], ...] = (("lr", rng.choice([0.1, 0.2, 0.3, rng.random()])),)
    if kind is not None:
        params += (("kind", kind), ("layers", rng.choice([1, 2, 2, True, None])))
    runs = rng.choice([0, 0, 2, 3])
    return TrialRow(
        number=number,
        state=state,
        value=rng.choice([None, 1.0, rng.random()]) if state == "COMPLETE" else None,
        duration_s=rng.choice([None, 2.0, rng.random() * 10]),
        last_step=rng.choice([None, 3, rng.randint(0, 40)]),
        params=params,
        reason=rng.choice([None, "oom", "pruned at step 3"]) if finished else None,
        retry_of=rng.choice([None, None, max(0, number - 3)]),
        seeded=rng.random() < 0.1,
        stage_runs=runs,
        stage_hits=rng.randint(0, runs),
        saved_s=rng.choice([0.0, 1.5, rng.random()]),
        inherited=rng.random() < 0.1,
    )


@pytest.mark.parametrize("state_filter", ["all", "COMPLETE", "RUNNING"])
def test_incremental_resort_matches_a_full_sort(state_filter):
    rng = random.Random(state_filter)
    rows = tuple(random_row(rng, n) for n in range(300))

    def keep(row: TrialRow) -> bool:
        return state_filter in ("all", row.state)

    for column in COLUMNS:
        for reverse in (False, True):
            old_rows = rows
            view = sort_rows([r for r in old_rows if keep(r)], column, reverse)
            for _ in range(5):  # snapshots: some rows change (new objects), some are added
                changed = sorted(rng.sample(range(len(old_rows)), 12))
                new_rows = list(old_rows)
                for index in changed:
                    fresh = random_row(rng, index)
                    new_rows[index] = dataclasses.replace(fresh, number=old_rows[index].number)
                added = [random_row(rng, len(new_rows) + i) for i in range(rng.randint(0, 4))]
                new_rows += added
                positions = changed + list(range(len(old_rows), len(new_rows)))
                moved = resort_rows(view, old_rows, new_rows, positions, column, reverse, keep)
                expected = sort_rows([r for r in new_rows if keep(r)], column, reverse)
                assert moved is not None
                assert [r.number for r in moved] == [r.number for r in expected], (column.key, reverse)
                view, old_rows = moved, tuple(new_rows)


def test_a_view_that_does_not_hold_the_old_rows_is_rebuilt():
    rng = random.Random(1)
    rows = tuple(random_row(rng, n) for n in range(50))
    column = BASE_COLUMNS[2]  # value
    changed_row = dataclasses.replace(rows[30], value=0.5, state="COMPLETE")
    new_rows = rows[:30] + (changed_row,) + rows[31:]
    wrong_view = [r for r in sort_rows(rows, column, False) if r.number != 30]  # lost the old row 30
    assert resort_rows(wrong_view, rows, new_rows, [30], column, False, lambda r: True) is None
    view = sort_rows(rows, column, False)
    moved = resort_rows(view, rows, new_rows, [30], column, False, lambda r: True)
    assert moved == sort_rows(new_rows, column, False)


@pytest.mark.parametrize(
    ("keys", "ascending", "descending"),
    [
        ([1.5, None, 1.5, 3, True, 0.0, -2], [6, 5, 4, 0, 2, 3, 1], [3, 0, 2, 4, 5, 6, 1]),  # numbers: numpy
        (["3", 2.0, None, "10"], [1, 3, 0, 2], [0, 3, 1, 2]),  # text, digits too: numbers first, then text
    ],
)
def test_sort_by_a_parameter(keys, ascending, descending):
    rows = tuple(TrialRow(n, "COMPLETE", None, None, None, (("p", k),)) for n, k in enumerate(keys))
    column = _param_column("p", 0)
    assert [r.number for r in sort_rows(rows, column, False)] == ascending
    assert [r.number for r in sort_rows(rows, column, True)] == descending


def python_sorted(rows, column, reverse):
    """The order sort_rows promises, by Python's stable sort: by key, ties in trial order, None last."""
    keyed = [(column.sort_key(row), row) for row in rows]
    present = [pair for pair in keyed if pair[0] is not None]
    present.sort(key=lambda pair: pair[0], reverse=reverse)
    return [row for _, row in present] + [row for key, row in keyed if key is None]


@pytest.mark.parametrize("column", [c for c in COLUMNS if c.key in ("value", "duration", "step", "saved", "lr")])
def test_numeric_sort_orders_as_pythons_stable_sort(column):
    rng = random.Random(column.key)
    rows = tuple(random_row(rng, n) for n in range(500))
    for reverse in (False, True):
        assert sort_rows(rows, column, reverse) == python_sorted(rows, column, reverse)


def test_kept_sort_keys_follow_the_rows_that_changed():
    """Numeric keys (numpy) and the others (text, a categorical mixing text and numbers, hits pairs) alike."""
    from tui.trial_table import SortedRows, TrialTable, _key_order, column_keys

    rng = random.Random(7)
    table = TrialTable()
    table.rows = tuple(random_row(rng, n) for n in range(200))
    columns = [c for c in COLUMNS if c.key != "number"]
    for column in columns:
        table._keys_for(column)
    kinds = {c.key: type(table._sort_keys[c.key]).__name__ for c in columns}
    assert kinds["value"] == kinds["lr"] == "ndarray" and kinds["note"] == kinds["kind"] == kinds["hits"] == "list"
    for _ in range(5):
        rows = list(table.rows)
        for index in rng.sample(range(len(rows)), 10):
            rows[index] = random_row(rng, index)
        rows += [random_row(rng, n) for n in range(len(rows), len(rows) + 7)]
        table.rows = tuple(rows)
        for column in columns:
            kept = table._keys_for(column)
            fresh = column_keys(column, table.rows)
            assert kept is not None
            if isinstance(fresh, list):
                assert kept == fresh
            else:
                assert isinstance(kept, np.ndarray) and kept.tobytes() == fresh.tobytes()  # NaN included
            for reverse in (False, True):
                view = SortedRows(table.rows, _key_order(kept, reverse))  # what the table shows
                assert list(view) == sort_rows(table.rows, column, reverse), (column.key, reverse)
                assert view[3] is list(view)[3] and view[2:5] == list(view)[2:5] and len(view) == len(table.rows)


@pytest.mark.parametrize("state_filter", ["all", "COMPLETE", "RUNNING", "WAITING"])
def test_a_sorted_view_from_kept_keys_is_a_full_sort_of_the_rows_shown(state_filter):
    from tui.trial_table import SortedRows, TrialTable

    rng = random.Random(state_filter)
    table = TrialTable()
    table.rows = tuple(random_row(rng, n) for n in range(300))
    table.columns = list(COLUMNS)
    table.state_filter = state_filter
    shown = [r for r in table.rows if state_filter in ("all", r.state)]
    for index, column in enumerate(COLUMNS):
        for reverse in (False, True):
            table.sort_index, table.sort_reverse = index, reverse
            view = table._sorted_view(None)
            assert list(view) == sort_rows(shown, column, reverse), (column.key, reverse)
            if isinstance(view, SortedRows) and shown:
                row = rng.choice(shown)
                assert view[view.index_of_number(row.number)] is row
