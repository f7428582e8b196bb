"""The ledger's writes to an Optuna journal file, without Optuna's replay of every trial.

Optuna's JournalStorage replays the whole journal before its first write (~575 MB at 100,000 trials),
although the ledger (engine.store.ledger) only ever touches studies: it reads and sets study user
attributes, and creates and deletes a gate's claim study. `JournalStudyStorage` serves exactly those
operations from a light `JournalReader` (engine.store.journal_reader, which keeps the studies whole
and the trials compact) and appends each write as the record Optuna's JournalStorage writes — the
same operation codes and payloads (optuna.storages.journal._storage, optuna 5.0), through the same
journal backend and file lock as the engine's storage (engine.store.storage) — so a running engine,
remote workers and `hpo-tui approve` read the writes as their own.

Each write is read back at once (`JournalReader.update`), as Optuna syncs after a write: a study
created under a name that another writer took first is reported as Optuna reports it
(DuplicatedStudyError), by the creating record's worker id.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection

from engine.store.journal_reader import JournalOperation, JournalReader


class JournalStudyStorage:
    """The study operations of an Optuna storage that the ledger uses (engine.store.ledger.LedgerStorage),
    on a journal file. Not thread-safe: share the reader with nothing that runs at the same time."""

    def __init__(self, reader: JournalReader) -> None:
        self.reader = reader
        self._worker_id_prefix = f"{uuid.uuid4()}-"  # Optuna's worker id: this prefix and the thread

    @property
    def worker_id(self) -> str:
        return self._worker_id_prefix + str(threading.get_ident())

    def _write(self, op: JournalOperation, fields: dict[str, Any]) -> None:
        self.reader.backend.append_logs([{"op_code": op, "worker_id": self.worker_id, **fields}])
        self.reader.update()

    def _existing(self, study_id: int) -> None:
        """KeyError for a study that is not there, as Optuna raises for its own writes."""
        self.reader.update()
        self.reader.study(study_id)

    # Reads -----------------------------------------------------------------------------------
    def get_study_id_from_name(self, study_name: str) -> int:
        self.reader.update()
        return self.reader.study_id(study_name)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        self.reader.update()
        return dict(self.reader.study(study_id).user_attrs)

    # Writes ----------------------------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str) -> int:
        """The new study's id; DuplicatedStudyError when a study of that name exists (or another writer's
        record creating one came first)."""
        self._write(JournalOperation.CREATE_STUDY, {"study_name": study_name, "directions": list(directions)})
        try:
            study = self.reader.study(self.reader.study_id(study_name))
        except KeyError:
            raise DuplicatedStudyError(f"study {study_name!r} was created and deleted meanwhile") from None
        if study.created_by != self.worker_id:
            raise DuplicatedStudyError(f"another study named {study_name!r} already exists")
        return study.study_id

    def delete_study(self, study_id: int) -> None:
        self._existing(study_id)
        self._write(JournalOperation.DELETE_STUDY, {"study_id": study_id})

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._existing(study_id)
        self._write(JournalOperation.SET_STUDY_USER_ATTR, {"study_id": study_id, "user_attr": {key: value}})

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._existing(study_id)
        self._write(JournalOperation.SET_STUDY_SYSTEM_ATTR, {"study_id": study_id, "system_attr": {key: value}})
