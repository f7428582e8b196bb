"""Everything the storage holds, named in one place: studies, ledger keys, attributes, states, env vars.

Studies of a campaign NAME in its Optuna storage
------------------------------------------------
- `NAME/campaign`: the ledger. Its study user attributes hold the campaign's own records (below).
- `NAME/NN-SPRINT`: one study per sprint (`sprint_study_name`), with short study attributes
  (`SPRINT_STUDY_ATTRS`: campaign, sprint, sampler, pruner, fidelity, tuned) and the metric's name.
- `NAME/decision:N`: the claim of gate N (`decision_claim_study_name`). Study names are unique on
  every Optuna storage, so creating this study succeeds for exactly one writer: the one whose
  decision counts (engine.store.ledger.Ledger.record_decision). It carries no trials.
- `NAME/lease:G`: generation G of the coordinator's lease (`lease_study_name`, engine.store.lease): the
  highest generation is current; its user attributes say who holds it and until when. No trials.

Ledger records (keys of the ledger study)
-----------------------------------------
`spec`, `original_space`, `state`, `sprint:I`, `proposal:G`, `decision:G`, `fidelity_request:G`,
`thresholds:STUDY:TRIAL` (I a sprint index, G a gate counter; a `/` inside a key is written `%2F`).

Attribute layout (optuna-dashboard shows a study attribute cut at 1,024 characters)
-----------------------------------------------------------------------------------
A record whose JSON fits in `ATTR_VALUE_LIMIT` characters is one attribute, `KEY = record`. A
larger one is split, recursively, so that no attribute value exceeds the limit:

- a dict: `KEY = {"~fields": [names]}` and one attribute per field, `KEY/FIELD = value`
  (e.g. `sprint:0/space/lr = {"type": "float", ...}`; `/` and `%` in a field name are escaped
  as `%2F` and `%25`);
- a list: `KEY = {"~items": n}` and `KEY/0`, `KEY/1`, ...;
- a string: `KEY = {"~chunks": n}` and `KEY/0`, `KEY/1`, ... (joined on read).

Parts are written before their marker, and a part that a rewrite no longer uses is set to null, so
a reader that follows the markers never mixes two shapes. Records written before this layout (one
attribute per record, whatever its size) read unchanged.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from typing import Any

from optuna.trial import TrialState

# Studies ----------------------------------------------------------------------------------------
CAMPAIGN_SUFFIX = "/campaign"
DECISION_CLAIM_PREFIX = "decision:"


def campaign_study_name(campaign: str) -> str:
    return campaign + CAMPAIGN_SUFFIX


def campaign_of_study(study_name: str) -> str | None:
    """The campaign whose ledger study this is, or None for any other study."""
    return study_name.removesuffix(CAMPAIGN_SUFFIX) if study_name.endswith(CAMPAIGN_SUFFIX) else None


def sprint_study_name(campaign: str, index: int, sprint: str) -> str:
    return f"{campaign}/{index:02d}-{sprint}"


def decision_claim_study_name(campaign: str, gate: int) -> str:
    return f"{campaign}/{DECISION_CLAIM_PREFIX}{gate}"


CLAIM_ATTR = "claim"  # the claim study's user attribute: action, source, when and user of the claiming writer


LEASE_PREFIX = "lease:"


def lease_study_name(campaign: str, generation: int) -> str:
    return f"{campaign}/{LEASE_PREFIX}{generation}"


# Sprint study attributes (short, for optuna-dashboard and plain Optuna users).
SPRINT_STUDY_ATTRS = ("campaign", "sprint", "index", "sampler", "pruner", "fidelity", "level", "tuned")

# Ledger keys ------------------------------------------------------------------------------------
SPEC_KEY = "spec"
STATE_KEY = "state"
ORIGINAL_SPACE_KEY = "original_space"
SPRINT_PREFIX = "sprint:"
PROPOSAL_PREFIX = "proposal:"
DECISION_PREFIX = "decision:"
FIDELITY_REQUEST_PREFIX = "fidelity_request:"
THRESHOLDS_PREFIX = "thresholds:"


def sprint_key(index: int) -> str:
    return f"{SPRINT_PREFIX}{index}"


def proposal_key(gate: int) -> str:
    return f"{PROPOSAL_PREFIX}{gate}"


def decision_key(gate: int) -> str:
    return f"{DECISION_PREFIX}{gate}"


def fidelity_request_key(gate: int) -> str:
    return f"{FIDELITY_REQUEST_PREFIX}{gate}"


def thresholds_id(study_name: str, trial_number: int) -> str:
    """How thresholds results are named (the ledger key without its prefix): `STUDY:TRIAL`."""
    return f"{study_name}:{trial_number}"


def thresholds_key(study_name: str, trial_number: int) -> str:
    return THRESHOLDS_PREFIX + thresholds_id(study_name, trial_number)


def key_index(key: str) -> int:
    """The number in `sprint:3`, `proposal:3`, `decision:3`, `fidelity_request:3`."""
    return int(key.split(":", 1)[1])


def keys_with_prefix(keys: Any, prefix: str) -> list[str]:
    """The numbered keys (`sprint:I`, `decision:G`, ...) among `keys`, in numeric order."""
    return sorted((k for k in keys if k.startswith(prefix)), key=key_index)


# Campaign states (the `status` field of the `state` record) -------------------------------------
class CampaignStatus:
    NEW = "new"
    RUNNING = "running"
    WAITING = "waiting"  # a gate waits for a decision
    STOPPED = "stopped"
    FAILED = "failed"
    FINISHED = "finished"


ENGINE_ACTIVE = (CampaignStatus.RUNNING, CampaignStatus.WAITING)
ENGINE_ENDED = (CampaignStatus.FINISHED, CampaignStatus.STOPPED, CampaignStatus.FAILED)


class SprintStatus:
    RUNNING = "running"
    CLOSED = "closed"


# Trial states, by Optuna's TrialState names ------------------------------------------------------
COMPLETE, PRUNED, FAIL, RUNNING, WAITING = "COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"
FINISHED_STATES = (COMPLETE, PRUNED, FAIL)
UNFINISHED_STATES = (RUNNING, WAITING)
FINISHED_TRIAL_STATES = tuple(TrialState[name] for name in FINISHED_STATES)  # for storage queries (`states=`)

# Trial user attributes (what the engine writes on a trial) ---------------------------------------
WORKER_ATTR = "worker"  # the worker id that claimed the trial
DURATION_ATTR = "duration_s"
SAMPLE_S_ATTR = "sample_s"
COST_ATTR = "cost"
FAIL_REASON_ATTR = "fail_reason"
FAIL_KIND_ATTR = "fail_kind"  # engine.execution.trials.FAIL_KINDS
PRUNED_AT_ATTR = "pruned_at"  # {"step": s, "value": v}
RETRIED_ATTR = "retried"  # failed, and queued again
SEEDED_ATTR = "seeded"  # enqueued from an earlier sprint's best
ARTIFACTS_ATTR = "artifacts"  # {name: path in the artifact store}
STAGES_ATTR = "stages"  # engine.cache.stages: per-stage records
INHERITED_ATTR = "inherited"  # engine.cache.checkpoints: the checkpoint a trial started from
CHECKPOINT_KEYS_ATTR = "checkpoint_keys"
PROBE_ATTR = "probe"  # engine.gates.reopen: enqueued outside the approved box
PROBE_PARAM_ATTR = "probe_param"  # the parameter a probe moved outside its range
PROBE_SIDE_ATTR = "probe_side"  # low / high
PROBE_BASE_ATTR = "probe_base"  # the configuration inside the box it was moved from
ENGINE_TRIAL_ATTRS = frozenset(
    {
        WORKER_ATTR,
        DURATION_ATTR,
        SAMPLE_S_ATTR,
        COST_ATTR,
        FAIL_REASON_ATTR,
        FAIL_KIND_ATTR,
        PRUNED_AT_ATTR,
        RETRIED_ATTR,
        SEEDED_ATTR,
        ARTIFACTS_ATTR,
        STAGES_ATTR,
        INHERITED_ATTR,
        CHECKPOINT_KEYS_ATTR,
    }
)

# Trial system attributes
RETRY_OF_ATTR = "failed_trial"  # the system attribute Optuna's own RetryFailedTrialCallback uses
RETRY_HISTORY_ATTR = "retry_history"
RUNG_ATTR_PREFIX = "completed_rung_"  # Optuna's successive-halving pruners
EXPLANATION_ATTR = "eeipu"  # engine.search.pipeline_costs: why the sampler chose the trial's parameters
ASK_TOKEN_ATTR = "ask_token"  # engine.execution.trials.ask_through_outage: finds its trial after an outage

# Lease study user attributes (engine.store.lease) -------------------------------------------------
HOLDER_ATTR = "holder"
EXPIRES_ATTR = "expires_at"  # epoch seconds by the holder's clock: its last renewal plus lease_s()
RELEASED_ATTR = "released"

# Environment variables ---------------------------------------------------------------------------
ENV_STORAGE_URL = "HPO_TUI_STORAGE_URL"  # the storage a worker or command uses when none is given
ENV_STORAGE_PATIENCE_S = "HPO_TUI_STORAGE_PATIENCE_S"  # how long to wait out a storage outage
ENV_THREADS = "HPO_TUI_THREADS"  # intra-op threads per CPU worker
ENV_KEYS = "HPO_TUI_KEYS"  # the console's key bindings file
ENV_LEASE_S = "HPO_TUI_LEASE_S"  # the coordinator lease's expiry in seconds (engine.store.lease; tests shorten it)
ENV_HOST = "HPO_TUI_HOST"  # tests only: the host name the lease records, to play another host
ENV_KILL_GRACE_S = "HPO_TUI_KILL_GRACE_S"  # past timeout_s plus this, a worker is killed (engine.execution.pool)
ENV_WORKER_LOG_BYTES = "HPO_TUI_WORKER_LOG_BYTES"  # a worker log's size before it rotates (engine.execution.worker)


# Who and when ------------------------------------------------------------------------------------
def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def who() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers)
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": str(os.getpid())}


# Attribute layout --------------------------------------------------------------------------------
ATTR_VALUE_LIMIT = 1000  # characters of JSON per attribute value; optuna-dashboard cuts at 1,024
SEP = "/"
FIELDS, ITEMS, CHUNKS = "~fields", "~items", "~chunks"


def escape(segment: str) -> str:
    return segment.replace("%", "%25").replace(SEP, "%2F")


def unescape(segment: str) -> str:
    return segment.replace("%2F", SEP).replace("%25", "%")


def _size(value: Any) -> int:
    return len(json.dumps(value))


def encode_record(key: str, value: Any) -> dict[str, Any]:
    """The attributes that store `value` under ledger key `key` (parts first, markers last)."""
    attrs: dict[str, Any] = {}
    _encode(escape(key), value, attrs)
    return attrs


def _encode(path: str, value: Any, attrs: dict[str, Any]) -> None:
    if _size(value) <= ATTR_VALUE_LIMIT:
        attrs[path] = value
    elif isinstance(value, dict):
        for name, field in value.items():
            _encode(f"{path}{SEP}{escape(str(name))}", field, attrs)
        attrs[path] = {FIELDS: [str(name) for name in value]}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _encode(f"{path}{SEP}{i}", item, attrs)
        attrs[path] = {ITEMS: len(value)}
    elif isinstance(value, str):
        step = ATTR_VALUE_LIMIT // 2  # escapes can double a chunk's JSON length
        chunks = [value[i : i + step] for i in range(0, len(value), step)]
        for i, chunk in enumerate(chunks):
            attrs[f"{path}{SEP}{i}"] = chunk
        attrs[path] = {CHUNKS: len(chunks)}
    else:
        attrs[path] = value


def _marker(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        (name,) = value
        if name in (FIELDS, ITEMS, CHUNKS):
            return name
    return None


class MissingPart(LookupError):
    """A marker names a part that is not written yet (a record read while it is being written)."""


def _decode(path: str, attrs: dict[str, Any]) -> Any:
    if path not in attrs:
        raise MissingPart(path)
    value = attrs[path]
    kind = _marker(value)
    if kind == FIELDS:
        return {name: _decode(f"{path}{SEP}{escape(name)}", attrs) for name in value[FIELDS]}
    if kind == ITEMS:
        return [_decode(f"{path}{SEP}{i}", attrs) for i in range(value[ITEMS])]
    if kind == CHUNKS:
        return "".join(_decode(f"{path}{SEP}{i}", attrs) for i in range(value[CHUNKS]))
    return value


def decode_record(key: str, attrs: dict[str, Any], default: Any = None) -> Any:
    """One ledger record from the ledger study's attributes; `default` when absent or half-written."""
    path = escape(key)
    if path in attrs and attrs[path] is not None:
        try:
            return _decode(path, attrs)
        except MissingPart:
            return default
    if path != key and attrs.get(key) is not None:
        return attrs[key]  # a legacy key holding a `/`, written unescaped
    return default


def decode_records(attrs: dict[str, Any]) -> dict[str, Any]:
    """Ledger records by key, reassembled from the ledger study's attributes.

    Top-level attributes are those without a separator, and the legacy thresholds keys (written
    unescaped, `thresholds:CAMPAIGN/00-S:N`). A record whose marker names a part not written yet
    is left out until it is whole.
    """
    records: dict[str, Any] = {}
    for path, value in attrs.items():
        if value is None:
            continue  # a part no longer used
        if SEP in path:
            head = path.split(SEP, 1)[0]
            if head.startswith(THRESHOLDS_PREFIX) and "%2F" not in head and _marker(value) is None:
                records[path] = value  # a legacy thresholds record: one attribute, its key unescaped
            continue
        try:
            records[unescape(path)] = _decode(path, attrs)
        except MissingPart:
            continue
    return records


def record_paths(key: str, attrs: Any) -> list[str]:
    """The attributes (among `attrs`, names) that belong to ledger key `key`, in any layout."""
    path = escape(key)
    return [a for a in attrs if a == path or a.startswith(path + SEP)]
