"""The trial table: a virtual Line-API view that renders only the rows on screen.

Size (~740 lines): one widget: columns, numpy sort keys kept up to date incrementally, the filter,
the cursor and line rendering of a virtual Line-API table.

Textual's DataTable re-renders every visible cell after any update and re-measures whole columns
(tens of milliseconds per frame at thousands of rows, seconds with update_width). This view keeps
the snapshot's immutable rows, sorts and filters them only when they change, and draws a line only
when Textual asks for it, so a frame costs the same at 10 rows and at 10,000.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import compress
from operator import attrgetter, indexOf, is_not
from typing import Any, TypeAlias, overload

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.views.snapshot import TrialRow
from tui import format as fmt

STATE_ORDER = {"RUNNING": 0, "WAITING": 1, "COMPLETE": 2, "PRUNED": 3, "FAIL": 4}
FILTERS = ("all", "RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")
GAP = 1
# A snapshot changing at most this many rows moves them in the sorted view (a binary search each)
# instead of sorting every row again: at 100,000 rows a full sort costs tens of milliseconds per snapshot.
INCREMENTAL_AT_MOST = 2000
WARM_SORT_KEYS_AT = 20_000  # rows: from here the columns' sort keys are worked out ahead, in a thread


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    text: Callable[[TrialRow], str]
    sort_key: Callable[[TrialRow], Any]  # None: the row has no value here (sorted last)
    right: bool = True
    attr: str | None = None  # a TrialRow attribute to sort by directly (C-speed, no Python key calls)
    value: Callable[[TrialRow], Any] | None = None  # a parameter's value, sorted numbers first


def _state_text(row: TrialRow) -> str:
    mark = "↻" if row.retried else "?" if row.stale else ""
    return fmt.trial_state(row.state, row.fail_kind) + mark


def _note(row: TrialRow) -> str:
    if row.reason:
        return row.reason
    if row.retry_of is not None:
        return f"re-runs #{row.retry_of}"
    return "seed" if row.seeded else ""


def _hits_key(row: TrialRow) -> Any:
    return (
        (row.stage_hits / row.stage_runs if row.stage_runs else 0.0, row.inherited)
        if row.stage_runs or row.inherited
        else None
    )


def _param_column(name: str, position: int) -> Column:
    def value_of(row: TrialRow) -> Any:
        params = row.params
        # Trials of a sprint suggest their params in the same order: look there first.
        if position < len(params) and params[position][0] == name:
            return params[position][1]
        return row.param(name)

    def text(row: TrialRow) -> str:
        return fmt.param(value_of(row))

    return Column(name, name[:10], max(9, min(len(name), 10)), text, value_of, value=value_of)


BASE_COLUMNS = (
    Column("number", "#", 5, lambda r: str(r.number), lambda r: r.number),
    # Rows arrive in trial order and the sort is stable: within a state they stay in trial order.
    Column("state", "state", 8, _state_text, lambda r: STATE_ORDER.get(r.state, 9), right=False),
    Column("value", "value", 10, lambda r: fmt.number(r.value), lambda r: r.value, attr="value"),
    Column("duration", "time", 7, lambda r: fmt.duration(r.duration_s), lambda r: r.duration_s, attr="duration_s"),
    Column("step", "step", 5, lambda r: fmt.number(r.last_step), lambda r: r.last_step, attr="last_step"),
)
# Shown when the sprint's trials record memoized stages (engine.cache.stages): cache hits / stages run
# (`+c`: started from an inherited checkpoint) and the stage time that saved.
STAGE_COLUMNS = (
    Column("hits", "hits", 6, lambda r: fmt.hits(r.stage_hits, r.stage_runs, r.inherited), _hits_key),
    Column(
        "saved",
        "saved",
        6,
        lambda r: fmt.duration(r.saved_s) if r.saved_s else "-",
        lambda r: r.saved_s,
        attr="saved_s",
    ),
)
NOTE_MIN_WIDTH = 12
NOTE_COLUMN = Column("note", "note", NOTE_MIN_WIDTH, _note, lambda r: _note(r) or None, right=False)


def sort_rows(
    rows: Sequence[TrialRow], column: Column, reverse: bool, keys: np.ndarray | None = None
) -> list[TrialRow]:
    """Rows sorted by a column; rows without a value (sort key None) stay last in both directions.

    `keys`: the column's numeric keys of `rows` (`numeric_keys`), when the caller keeps them."""
    if column.key == "number":
        return list(reversed(rows)) if reverse else list(rows)  # snapshots come in trial order
    if column.key == "state":  # a bucket per state, in trial order: 6 ms at 100,000 rows, a sort 25-90 ms
        buckets: dict[str, list[TrialRow]] = {state: [] for state in STATE_ORDER}
        unknown: list[TrialRow] = []  # ranked last (sort_key 9)
        for row in rows:
            buckets.get(row.state, unknown).append(row)
        parts = [*buckets.values(), unknown]
        if reverse:
            parts.reverse()
        return [row for part in parts for row in part]
    if column.attr is not None or column.value is not None:
        if keys is not None:
            return list(map(rows.__getitem__, _numeric_order(keys, reverse)))
        values = list(map(_getter(column), rows))
        numeric = numeric_keys(values)
        if numeric is not None:
            return list(map(rows.__getitem__, _numeric_order(numeric, reverse)))
        present_at = [i for i, v in enumerate(values) if v is not None]
        key: Callable[[int], Any]
        if all(isinstance(values[i], (int, float)) for i in present_at):
            key = values.__getitem__
        else:  # categorical choices mixing numbers and text: numbers first
            key = lambda i: (0, values[i], "") if isinstance(values[i], (int, float)) else (1, 0, str(values[i]))  # noqa: E731
        present_at.sort(key=key, reverse=reverse)
        return [rows[i] for i in present_at] + [rows[i] for i, v in enumerate(values) if v is None]
    keyed: list[tuple[Any, TrialRow]] = [(column.sort_key(row), row) for row in rows]
    with_key = [pair for pair in keyed if pair[0] is not None]
    with_key.sort(key=lambda pair: pair[0], reverse=reverse)
    return [row for _, row in with_key] + [row for sort_key, row in keyed if sort_key is None]


_NUMERIC_TYPES = frozenset({int, float, bool, type(None)})


def _getter(column: Column) -> Callable[[TrialRow], Any]:
    """What a column sorts by: an attribute, a parameter's value, else its sort key (a state's rank: its
    buckets, in trial order, are a stable sort by rank; a note's text)."""
    if column.attr is not None:
        return attrgetter(column.attr)
    if column.value is not None:
        return column.value
    return column.sort_key


def _keyed(column: Column) -> bool:
    """Sorted by keys the table keeps (`column_keys`); the number column is the rows' own order."""
    return column.key != "number"


def numeric_keys(values: list[Any]) -> np.ndarray | None:
    """Sort keys as floats (None: NaN) when every value is a number or None; else None."""
    if not set(map(type, values)) <= _NUMERIC_TYPES:
        return None
    return np.array(values, dtype=np.float64)


# A column's sort keys, one per row: floats (NaN: no value), or, when some key is not a number (a note's
# text, a categorical mixing text and numbers, the hits pair), `_order_key` values (None: no value), ranked
# before numpy sorts them. Kept per column and updated from the rows that changed, a sort key press costs
# a sort of the kept keys: at 100,000 rows building them takes 30-90 ms, and a Python sort of the note
# column's rows took 300-400 ms.
SortKeys: TypeAlias = "np.ndarray | list[Any]"


def column_keys(column: Column, rows: Sequence[TrialRow]) -> SortKeys:
    """The column's sort keys of `rows` (see `SortKeys`)."""
    values = list(map(_getter(column), rows))
    numeric = numeric_keys(values)
    if numeric is not None:
        return numeric
    if column.value is None:
        return values  # an attribute or a sort key: the order key itself
    return [_order_key(column, row) for row in rows]


def _key_order(keys: SortKeys, reverse: bool) -> list[int]:
    """Positions in `sort_rows`' order from a column's kept keys."""
    if isinstance(keys, np.ndarray):
        return _numeric_order(keys, reverse)
    # Few distinct keys (notes, choices): rank them, then sort the ranks by numpy (a Python sort of
    # 100,000 keys took 30-60 ms); equal keys get equal ranks, so the order is the same stable sort.
    distinct = set(keys)
    distinct.discard(None)
    rank: dict[Any, float] = {key: float(r) for r, key in enumerate(sorted(distinct))}
    rank[None] = np.nan
    return _numeric_order(np.fromiter(map(rank.__getitem__, keys), np.float64, len(keys)), reverse)


def _numeric_order(keys: np.ndarray, reverse: bool) -> list[int]:
    """Positions in sort order by numpy: a stable argsort (ties keep their order), NaN (None) last.
    At 100,000 rows a Python sort with a key took 45-150 ms; a sort key must answer within 100 ms."""
    missing = np.isnan(keys)
    present = np.flatnonzero(~missing)
    present_keys = keys[present]
    ranked = present[np.argsort(-present_keys if reverse else present_keys, kind="stable")]
    return np.concatenate((ranked, np.flatnonzero(missing))).tolist()


class SortedRows(Sequence[TrialRow]):
    """Rows in a sorted order, without a list of them: only the rows on screen are ever looked up.
    Building the list of 100,000 sorted rows cost ~20 ms of a sort key press, more than the argsort."""

    __slots__ = ("_order", "_rows")

    def __init__(self, rows: Sequence[TrialRow], order: list[int]) -> None:
        self._rows = rows
        self._order = order

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, index: int) -> TrialRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[TrialRow]: ...

    def __getitem__(self, index: int | slice) -> TrialRow | list[TrialRow]:
        if isinstance(index, slice):
            return list(map(self._rows.__getitem__, self._order[index]))
        return self._rows[self._order[index]]

    def __iter__(self) -> Iterator[TrialRow]:
        return map(self._rows.__getitem__, self._order)

    def index_of_number(self, number: int) -> int:
        """Where the row of trial `number` is in this order (ValueError: not here)."""
        rows = self._rows
        # Rows come in trial order, numbered from 0 without gaps in a sprint: look there first.
        if 0 <= number < len(rows) and rows[number].number == number:
            at = number
        else:
            at = indexOf(map(attrgetter("number"), rows), number)
        return self._order.index(at)


def changed_positions(old: Sequence[TrialRow], rows: Sequence[TrialRow]) -> list[int] | None:
    """Positions of `rows` that are not the row `old` held there (rows are immutable and shared between
    snapshots: a row that changed is a new object), the added ones included; None when rows went away or
    more than INCREMENTAL_AT_MOST changed (then everything is worked out again)."""
    if len(rows) < len(old):
        return None
    changed = list(compress(range(len(old)), map(is_not, old, rows)))
    changed += range(len(old), len(rows))
    return changed if len(changed) <= INCREMENTAL_AT_MOST else None


def _realign(
    keys_by_column: dict[str, SortKeys],
    columns: Sequence[Column],
    old: Sequence[TrialRow],
    rows: Sequence[TrialRow],
    changed: list[int] | None = None,
) -> None:
    """Bring sort keys worked out for `old` to `rows`, in place: only the rows that changed
    (`changed_positions`, worked out here unless given) are read again; keys it cannot bring along
    (numbers that met a value that is not a number) are dropped."""
    if old is rows or not keys_by_column:
        return
    if changed is None:
        changed = changed_positions(old, rows)
    if changed is None:
        keys_by_column.clear()
        return
    if not changed:
        return
    by_key = {c.key: c for c in columns}
    changed_rows = list(map(rows.__getitem__, changed))
    for key, keys in list(keys_by_column.items()):
        column = by_key.get(key)
        if column is None:
            del keys_by_column[key]
        elif isinstance(keys, np.ndarray):
            fresh = numeric_keys(list(map(_getter(column), changed_rows)))
            if fresh is None:
                del keys_by_column[key]
                continue
            if len(keys) < len(rows):
                keys = np.concatenate((keys, np.empty(len(rows) - len(keys))))
            keys[changed] = fresh
            keys_by_column[key] = keys
        else:
            keys.extend([None] * (len(rows) - len(keys)))
            for position, row in zip(changed, changed_rows, strict=True):
                keys[position] = _order_key(column, row)


def _order_key(column: Column, row: TrialRow) -> Any:
    """The row's key in `sort_rows`' order for this column (None: no value, sorted last)."""
    if column.key == "number":
        return row.number
    if column.attr is not None:
        return getattr(row, column.attr)
    if column.value is not None:
        value = column.value(row)
        if value is None:
            return None
        # sort_rows' mixed-choices key; for numbers alone it orders exactly as the bare value does
        return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))
    return column.sort_key(row)


def _goes_before(key: Any, number: int, other: TrialRow, column: Column, reverse: bool) -> bool:
    """Whether a row (key, number) comes before `other` in sort_rows' order: by key (reversed or not),
    ties in trial order (sort_rows is stable and its input is in trial order), rows without a key last."""
    other_key = _order_key(column, other)
    if key is None or other_key is None:
        return other_key is None and (key is not None or number < other.number)
    if key < other_key:
        return not reverse
    if other_key < key:
        return reverse
    return number < other.number


def _position(view: list[TrialRow], row: TrialRow, column: Column, reverse: bool) -> int:
    """Where `row` goes (or is) in a view sorted by `sort_rows`: a binary search."""
    key = _order_key(column, row)
    low, high = 0, len(view)
    while low < high:
        middle = (low + high) // 2
        if _goes_before(key, row.number, view[middle], column, reverse):
            high = middle
        else:
            low = middle + 1
    return low


def resort_rows(
    view: Sequence[TrialRow],
    old_rows: Sequence[TrialRow],
    rows: Sequence[TrialRow],
    changed: Iterable[int],
    column: Column,
    reverse: bool,
    keep: Callable[[TrialRow], bool],
) -> list[TrialRow] | None:
    """The sorted view of `rows`, from the view of `old_rows` and the positions that changed; None when
    the old view does not hold what it should (the caller sorts from scratch)."""
    view = list(view)
    for index in changed:
        old = old_rows[index] if index < len(old_rows) else None
        if old is not None and keep(old):
            at = _position(view, old, column, reverse) - 1  # the old row sorts just before its own slot
            if not (0 <= at < len(view) and view[at] is old):
                return None
            del view[at]
        new = rows[index]
        if keep(new):
            view.insert(_position(view, new, column, reverse), new)
    return view


class TrialTable(ScrollView, can_focus=True):
    """Rows of the shown sprint. Posts `Selected` on enter or a click on the selected row."""

    COMPONENT_CLASSES = {
        "trial-table--header",
        "trial-table--sorted",
        "trial-table--cursor",
        "trial-table--running",
        "trial-table--complete",
        "trial-table--pruned",
        "trial-table--fail",
        "trial-table--lost",
        "trial-table--waiting",
        "trial-table--best",
    }
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    class Selected(Message):
        def __init__(self, row: TrialRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: tuple[TrialRow, ...] = ()
        self.view: Sequence[TrialRow] = []
        self._view_order: tuple[str, bool, str] | None = None  # (column, reverse, filter) the view is in
        self.param_names: tuple[str, ...] = ()
        self.staged = False
        self.columns: list[Column] = list(BASE_COLUMNS) + [NOTE_COLUMN]
        self.sort_index = 0
        self.sort_reverse = False
        self.state_filter = "all"
        self.follow = False
        self.cursor = 0
        self.best_number: int | None = None
        self._selected_number: int | None = None
        # Rows are immutable: a rendered row is reused until the row object, the cursor or the layout changes.
        self._strips: LRUCache[tuple[TrialRow, bool, bool], Strip] = LRUCache(4096)
        self._base_style = Style()
        self._line_width = 0
        # Sort keys per column (`SortKeys`), aligned with `_keys_rows`, kept up to date from the rows that
        # changed: a sort key press then costs a sort of the kept keys, not a pass of Python calls over every row.
        self._sort_keys: dict[str, SortKeys] = {}
        self._keys_rows: tuple[TrialRow, ...] = ()
        self._warming = False

    # Data ------------------------------------------------------------------------------------
    def set_rows(
        self, rows: tuple[TrialRow, ...], param_names: Sequence[str], best: int | None = None, staged: bool = False
    ) -> None:
        """Show the rows of a snapshot; a no-op when they are the very same rows.

        `staged`: the trials record memoized stages, so the hits and saved columns are shown."""
        param_names = tuple(param_names)
        if rows is self.rows and param_names == self.param_names and best == self.best_number and staged == self.staged:
            return
        layout_changed = param_names != self.param_names or best != self.best_number or staged != self.staged
        old_rows = self.rows
        if param_names != self.param_names or staged != self.staged:
            self._view_order = None
            self._sort_keys.clear()
            self.param_names = param_names
            self.staged = staged
            sort_key = self.columns[self.sort_index].key
            self.columns = (
                list(BASE_COLUMNS)
                + (list(STAGE_COLUMNS) if staged else [])
                + [_param_column(n, i) for i, n in enumerate(param_names)]
                + [NOTE_COLUMN]
            )
            keys = [c.key for c in self.columns]
            self.sort_index = keys.index(sort_key) if sort_key in keys else 0
        changed = changed_positions(old_rows, rows)  # once, for the view and for the kept keys
        self.rows = rows
        self.best_number = best
        self._rebuild(layout_changed, old_rows, changed)
        if self._keys_rows is old_rows:  # the rebuild did not bring them along
            _realign(self._sort_keys, self.columns, old_rows, rows, changed)
            self._keys_rows = rows
        self._align_sort_keys()
        self._warm_sort_keys()

    def _sorted_view(self, old_rows: Sequence[TrialRow] | None, changed: list[int] | None = None) -> Sequence[TrialRow]:
        column, reverse, state_filter = self.columns[self.sort_index], self.sort_reverse, self.state_filter
        order = (column.key, reverse, state_filter)
        if old_rows is not None and order == self._view_order:
            if changed is None:
                changed = changed_positions(old_rows, self.rows)
            if changed is not None:
                keep = (lambda row: True) if state_filter == "all" else (lambda row: row.state == state_filter)
                view = resort_rows(self.view, old_rows, self.rows, changed, column, reverse, keep)
                if view is not None:
                    return view
        self._view_order = order
        keys = self._keys_for(column)
        if state_filter == "all":
            return (
                SortedRows(self.rows, _key_order(keys, reverse))
                if keys is not None
                else sort_rows(self.rows, column, reverse)
            )
        # The rows in the state, found by the state column's kept keys (a Python pass took 10-25 ms).
        state_keys = self._keys_for(BASE_COLUMNS[1])
        assert isinstance(state_keys, np.ndarray)  # ranks of STATE_ORDER: numbers
        kept = np.flatnonzero(state_keys == STATE_ORDER[state_filter])
        if keys is None:  # the number column: the rows' own order
            return SortedRows(self.rows, kept[::-1].tolist() if reverse else kept.tolist())
        kept_keys = keys[kept] if isinstance(keys, np.ndarray) else list(map(keys.__getitem__, kept.tolist()))
        return SortedRows(self.rows, kept[_key_order(kept_keys, reverse)].tolist())

    def _keys_for(self, column: Column) -> SortKeys | None:
        """The column's kept sort keys of `rows` (None: the number column, sorted by the rows' order)."""
        if not _keyed(column):
            return None
        self._align_sort_keys()
        keys = self._sort_keys.get(column.key)
        if keys is None:
            keys = self._sort_keys[column.key] = column_keys(column, self.rows)
        return keys

    def _align_sort_keys(self) -> None:
        """Bring the kept sort keys to the current rows."""
        if self._keys_rows is not self.rows:
            _realign(self._sort_keys, self.columns, self._keys_rows, self.rows)
            self._keys_rows = self.rows

    def _warm_sort_keys(self) -> None:
        """Work out the columns' sort keys in a thread, so that even a column's first sort key press
        costs a sort of kept keys (a Python pass over 100,000 rows takes 30-400 ms of the UI thread)."""
        if len(self.rows) < WARM_SORT_KEYS_AT or self._warming or not self.is_mounted:
            return
        missing = [c for c in self.columns if _keyed(c) and c.key not in self._sort_keys]
        if not missing:
            return
        self._warming = True
        rows = self.rows

        def compute() -> None:
            computed = {column.key: column_keys(column, rows) for column in missing}
            self.app.call_from_thread(self._take_sort_keys, rows, computed)

        self.run_worker(compute, thread=True, group="sort-keys", exit_on_error=False)

    def _take_sort_keys(self, rows: tuple[TrialRow, ...], computed: dict[str, SortKeys]) -> None:
        self._warming = False
        self._align_sort_keys()
        _realign(computed, self.columns, rows, self.rows)
        for key, keys in computed.items():
            self._sort_keys.setdefault(key, keys)

    def _rebuild(
        self,
        layout_changed: bool = True,
        old_rows: Sequence[TrialRow] | None = None,
        changed: list[int] | None = None,
    ) -> None:
        """Filter and sort the rows; repaint everything, or (new data only) just the lines that changed.

        `old_rows`: the rows the view was built from, when only the data changed (moved incrementally);
        `changed`: their `changed_positions`, when the caller has them."""
        old_view, old_cursor, old_top = self.view, self.cursor, round(self.scroll_y)
        view = self._sorted_view(old_rows, changed)
        self.view = view
        if self._fit_note_column():
            layout_changed = True
        if self.follow and view:
            # Rows come in trial order: the newest shown is the last one that passes the filter.
            self._selected_number = next(r.number for r in reversed(self.rows) if self.state_filter in ("all", r.state))
        self.cursor = self._index_of(self._selected_number)
        size = Size(self._total_width(), len(view) + 1)
        if size != self.virtual_size:
            self.virtual_size = size
        if self.follow or self.cursor != old_cursor or layout_changed:
            self._scroll_cursor_into_view()  # new data alone must not yank a table the operator scrolled
        if layout_changed:
            self._strips.clear()
            self.refresh()
        elif round(self.scroll_y) != old_top:
            self.refresh()
        else:
            self._refresh_changed(old_view, old_cursor)

    def _refresh_changed(self, old_view: Sequence[TrialRow], old_cursor: int) -> None:
        top = round(self.scroll_y)
        for index in range(top, min(top + self._visible_rows(), max(len(old_view), len(self.view)))):
            old = old_view[index] if index < len(old_view) else None
            new = self.view[index] if index < len(self.view) else None
            if old is not new or (index in (old_cursor, self.cursor) and old_cursor != self.cursor):
                self._refresh_row(index)

    def _total_width(self) -> int:
        return sum(c.width for c in self.columns) + GAP * (len(self.columns) - 1)

    def _fit_note_column(self) -> bool:
        """The note column takes the width left over, so the table scrolls sideways only when it must."""
        fixed = self._total_width() - self.columns[-1].width
        width = max(NOTE_MIN_WIDTH, self.scrollable_content_region.width - fixed)
        if width == self.columns[-1].width:
            return False
        self.columns[-1] = replace(self.columns[-1], width=width)
        return True

    def _index_of(self, number: int | None) -> int:
        if not self.view:
            return 0
        if number is not None:
            if 0 <= self.cursor < len(self.view) and self.view[self.cursor].number == number:
                return self.cursor  # the usual case: nothing moved
            try:  # a scan at C speed (100,000 rows after a sort moved the selected one)
                if isinstance(self.view, SortedRows):
                    return self.view.index_of_number(number)
                return indexOf(map(attrgetter("number"), self.view), number)
            except ValueError:
                pass  # filtered out
        return min(self.cursor, len(self.view) - 1)

    @property
    def selected(self) -> TrialRow | None:
        return self.view[self.cursor] if 0 <= self.cursor < len(self.view) else None

    # Sorting, filtering, following -------------------------------------------------------------
    @property
    def sort_column(self) -> Column:
        return self.columns[self.sort_index]

    def cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(self.columns)
        # Longest first, most hits first, most saved first: what one looks for.
        self.sort_reverse = self.sort_column.key in ("duration", "hits", "saved")
        self._rebuild()

    def reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._rebuild()

    def set_filter(self, state: str) -> None:
        self.state_filter = state if state in FILTERS else "all"
        self._rebuild()

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        self._rebuild(old_rows=self.rows)  # the same rows in the same order: the view stays as it is

    # Cursor ----------------------------------------------------------------------------------
    def move_cursor(self, index: int) -> None:
        if not self.view:
            return
        index = max(0, min(index, len(self.view) - 1))
        if index != self.cursor:
            old = self.cursor
            self.cursor = index
            self._refresh_row(old)
            self._refresh_row(index)
        self._selected_number = self.view[index].number
        self._scroll_cursor_into_view()

    def action_cursor(self, delta: int) -> None:
        self.follow = False
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.follow = False
        self.move_cursor(self.cursor + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, where: int) -> None:
        self.follow = False
        self.move_cursor(where if where >= 0 else len(self.view) - 1)

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self.selected))

    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_y)
        rows = self._visible_rows()
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False, immediate=True)

    def _refresh_row(self, index: int) -> None:
        self.refresh_line(index - round(self.scroll_y) + 1)

    async def _on_click(self, event: events.Click) -> None:
        index = event.y - 1 + round(self.scroll_y)
        if event.y == 0 or not 0 <= index < len(self.view):
            return
        if index == self.cursor and event.chain >= 2:
            self.action_select()
        self.follow = False
        self.move_cursor(index)

    def on_resize(self) -> None:
        self._fit_note_column()
        self._strips.clear()
        self.virtual_size = Size(self._total_width(), len(self.view) + 1)
        self._scroll_cursor_into_view()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    # Rendering -------------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        # The widget's own style walks every ancestor: work it out once per frame, not once per line.
        self._base_style = self.rich_style
        self._line_width = self.scrollable_content_region.width
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self._line_width
        base = self._base_style
        if y == 0:
            strip = self._header_strip(base)
        else:
            index = y - 1 + scroll_y
            if index >= len(self.view):
                return Strip.blank(width, base)
            row = self.view[index]
            key = (row, index == self.cursor, row.number == self.best_number)
            cached = self._strips.get(key)
            if cached is None:
                cached = self._strips[key] = self._row_strip(row, index == self.cursor, base)
            strip = cached
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _cells(self, texts: list[str], styles: list[Style], gap_style: Style) -> Strip:
        segments: list[Segment] = []
        gap = Segment(" " * GAP, gap_style)
        for column, text, style in zip(self.columns, texts, styles, strict=False):
            cell = text[: column.width]
            cell = cell.rjust(column.width) if column.right else cell.ljust(column.width)
            segments.append(Segment(cell, style))
            segments.append(gap)
        return Strip(segments[:-1])

    def _header_strip(self, base: Style) -> Strip:
        header = base + self.get_component_rich_style("trial-table--header")
        sorted_style = header + self.get_component_rich_style("trial-table--sorted")
        arrow = "▼" if self.sort_reverse else "▲"
        texts, styles = [], []
        for index, column in enumerate(self.columns):
            if index == self.sort_index:
                texts.append((column.title + arrow) if not column.right else (arrow + column.title))
                styles.append(sorted_style)
            else:
                texts.append(column.title)
                styles.append(header)
        return self._cells(texts, styles, header)

    def _row_strip(self, row: TrialRow, is_cursor: bool, base: Style) -> Strip:
        kind = "lost" if row.lost else row.state.lower()  # a worker that disappeared, not the trial's doing
        style = base + self.get_component_rich_style(f"trial-table--{kind}", default=Style())
        if row.number == self.best_number:
            style += self.get_component_rich_style("trial-table--best")
        if is_cursor:
            style += self.get_component_rich_style("trial-table--cursor")
        texts = [column.text(row) for column in self.columns]
        return self._cells(texts, [style] * len(self.columns), style)
