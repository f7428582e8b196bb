"""The errors a user can meet, each with its own documented exit code.

Every command (coordinator, worker, approve, status, ...) turns an `HpoError` into one line on
stderr and its exit code, never a traceback. Modules raise subclasses; `engine.cli.run_cli` prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the records import nothing from here, but errors stays free of imports at run time
    from engine.store.records import Decision

EXIT_OK = 0
EXIT_FAILED = 1  # the campaign ran but ended failed
EXIT_USAGE = 2  # bad flags, a bad campaign or plan file, an invalid edit
EXIT_STORAGE_UNREACHABLE = 3  # the storage stayed unreachable past the patience
EXIT_LEASE_HELD = 4  # another coordinator holds the campaign
EXIT_CORRUPT_STORAGE = 5  # a torn or unparsable journal: run `hpo-tui repair`
EXIT_CONFLICT = 6  # the gate was already decided by someone else
EXIT_STORAGE_REFUSED = 7  # a permanent storage error: authentication, permissions, read-only
EXIT_MISSING_EXTRA = 8  # the command needs an optional dependency that is not installed
EXIT_WORKERS_FAILING = 9  # a worker process kept dying (more than 10 times in a minute): see its log
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # the reader of our output went away (`hpo-tui status X | head -1`): quiet, like SIGPIPE


class HpoError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code = EXIT_FAILED


class UsageError(HpoError, ValueError):
    exit_code = EXIT_USAGE


class StorageUrlError(UsageError):
    """A storage URL that cannot be opened at all (bad scheme, bad syntax, missing driver)."""


class StorageMissing(UsageError):
    """A read-only command named a storage file that does not exist (nothing is created)."""


class StorageUnreachable(HpoError):
    exit_code = EXIT_STORAGE_UNREACHABLE


class StorageRefused(HpoError):
    """Authentication failed, permission denied, read-only: retrying cannot help."""

    exit_code = EXIT_STORAGE_REFUSED


class CorruptStorage(HpoError):
    exit_code = EXIT_CORRUPT_STORAGE


class LeaseHeld(HpoError):
    exit_code = EXIT_LEASE_HELD


class GateAlreadyDecided(HpoError):
    """`winner`: the decision that counts, when it could be read (only what its claim says, with no space or
    fidelity, while the winner has not written its record yet)."""

    exit_code = EXIT_CONFLICT

    def __init__(self, message: str, winner: Decision | None = None):
        super().__init__(message)
        self.winner = winner


class MissingExtra(HpoError, ImportError):
    """A command needs an optional dependency: the message names the extra to install."""

    exit_code = EXIT_MISSING_EXTRA


class WorkersFailing(HpoError):
    """A local worker process died again and again: the campaign stops (its log says why)."""

    exit_code = EXIT_WORKERS_FAILING
