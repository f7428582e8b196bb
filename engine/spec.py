"""Campaign files: TOML validated with pydantic into a CampaignSpec.

Size (~430 lines): one pydantic model per campaign-file table, their cross-checks, and errors with file and key.

Every problem is reported with the file, the key path and the reason; never a traceback.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import MissingExtra, UsageError
from engine.objective import load_objective
from engine.toml_compat import tomllib
from engine.units import parse_size

SamplerName = Literal["tpe", "gp", "skopt-gp", "random", "qmc", "grid", "cmaes", "eeipu", "eeipu-gp", "mf-gp"]
PrunerName = Literal["hyperband", "successive-halving", "median", "curve", "none"]
PolicyName = Literal["auto", "wait", "plan"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
PRUNERS: tuple[str, ...] = get_args(PrunerName)
POLICIES: tuple[str, ...] = get_args(PolicyName)
MAX_ABS_BOUND = 1e15  # anything larger is a typo, and breaks log-space arithmetic
MAX_FILE_BYTES = 1024 * 1024


# A campaign's name names its storage and runs/<name>/: no path separators, never '.' or '..'.
CAMPAIGN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CAMPAIGN_NAME_RULE = "use letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)"


def check_campaign_name(name: str) -> str:
    """A campaign name typed on the command line, checked before any path is built from it."""
    if not CAMPAIGN_NAME.fullmatch(name):
        raise UsageError(f"{name!r} is neither a campaign file nor a campaign name: {CAMPAIGN_NAME_RULE}")
    return name


class CampaignFileError(Exception):
    """A campaign file that cannot be used; `problems` holds (key path, reason) pairs."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]], *, what: str = "campaign"):
        self.path = str(path)
        self.problems = problems
        self.what = what  # "campaign" or "plan": the kind of file, for the heading
        lines = [f"{self.path}: {key or '<file>'}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    if abs(value) > MAX_ABS_BOUND:
        raise ValueError(f"{what} {value:g} is beyond ±{MAX_ABS_BOUND:g}")
    return value


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    default: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _finite(self.low, "low")
        _finite(self.high, "high")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range must be positive, but low is {self.low:g}")
        if self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default:g} is outside [{self.low:g}, {self.high:g}]")
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1
    default: int | None = None

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _finite(self.low, "low")
        _finite(self.high, "high")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.step < 1:
            raise ValueError(f"step must be at least 1, got {self.step}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range must be positive, but low is {self.low}")
        if self.log and self.step != 1:
            raise ValueError("an int parameter cannot have both log and step")
        if self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        return self


Scalar = bool | int | float | str


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Scalar]
    default: Scalar | None = None

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if not self.choices:
            raise ValueError("choices must not be empty")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError("choices must not repeat")
        if self.default is not None and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of the choices")
        return self


class FixedParam(_Strict):
    type: Literal["fixed"]
    value: Scalar


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam | FixedParam, Field(discriminator="type")]


class ObjectiveSpec(_Strict):
    path: str = Field(description="import path 'package.module:function'")
    settings: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, description="a trial running longer fails")

    @field_validator("path")
    @classmethod
    def _path_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(f"must look like 'package.module:function', got {value!r}")
        return value


class MetricSpec(_Strict):
    name: str = "value"
    direction: Literal["minimize", "maximize"] = "minimize"


class FidelitySpec(_Strict):
    """Named fidelity levels, lowest first. Each level sets the knobs the objective reads."""

    levels: dict[str, dict[str, Scalar]]
    cost_knobs: list[str] = Field(
        default_factory=list,
        description="knobs whose product, relative to the last level, is a trial's cost",
    )

    @model_validator(mode="after")
    def _check(self) -> FidelitySpec:
        if not self.levels:
            raise ValueError("at least one fidelity level is needed")
        knobs = [set(v) for v in self.levels.values()]
        for name, values in self.levels.items():
            if set(values) != knobs[0]:
                raise ValueError(f"level {name!r} sets {sorted(values)}, others set {sorted(knobs[0])}")
        for knob in self.cost_knobs:
            if knob not in knobs[0]:
                raise ValueError(f"cost knob {knob!r} is not a fidelity knob")
            for name, values in self.levels.items():
                value = values[knob]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"cost knob {knob!r} must be a positive number in level {name!r}")
        return self


class GateRules(_Strict):
    top_k: int = Field(default=10, ge=1)
    margin: float = Field(default=1.0, ge=0, le=5, description="fraction of the top-k span added on each side")
    min_width: float = Field(
        default=0.1, ge=0, le=1, description="narrowed width is at least this share of the current one"
    )
    freeze_importance: float = Field(
        default=0.0, ge=0, le=1, description="freeze a parameter below this importance (0: never)"
    )
    edge_fraction: float = Field(
        default=0.05, ge=0, le=0.5, description="best values within this share of a bound warn"
    )
    categorical_keep: float = Field(
        default=0.0, ge=0, le=1, description="drop a choice that appears in less than this share of the top-k"
    )
    drift_extrapolate: float = Field(
        default=1.5,
        ge=0,
        le=5,
        description="where the top-k moved away from the re-evaluated lower-fidelity best, extend the range that "
        "way by this multiple of the move (engine.gates.reopen; 0: off)",
    )
    trust_rank: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="below this rank agreement between a lower fidelity and the sprint's own, on the "
        "configurations it re-evaluated, the margin widens (x trust_rank / rho); at rho <= reopen_rank "
        "nothing is narrowed",
    )
    reopen_rank: float = Field(
        default=0.5,
        ge=-1,
        le=1,
        description="at or below this rank agreement between the fidelity that narrowed a range and the sprint's "
        "own, every narrowed range re-opens to the campaign's bounds and nothing is narrowed (engine.gates.reopen; "
        "0.5 by measurement: over 8 re-evaluated configurations a weak agreement is as likely a biased fidelity as "
        "noise, docs/benchmarks.md)",
    )


class SprintSpec(_Strict):
    name: str
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "none"
    n_trials: int | None = Field(default=None, ge=1, le=1_000_000)
    timeout_s: float | None = Field(default=None, gt=0)
    budget_cost: float | None = Field(default=None, gt=0, description="budget in fidelity-weighted cost units")
    budget_seconds: float | None = Field(
        default=None, gt=0, description="budget in seconds of trial cost (sum of trials' duration)"
    )
    fidelity: str
    params: list[str] | None = Field(default=None, description="parameters tuned; others stay at their best value")
    seed_top: int = Field(
        default=0, ge=0, description="best configurations of earlier sprints enqueued first; they count within n_trials"
    )
    explore_share: float = Field(
        default=0.1,
        ge=0,
        le=0.5,
        description="share of a narrowed sprint's trials probing outside the approved box (engine.gates.reopen; 0: none)",
    )
    seed: int | None = None
    sampler_options: dict[str, Any] = Field(default_factory=dict)
    pruner_options: dict[str, Any] = Field(default_factory=dict)
    gate: GateRules | None = None

    @model_validator(mode="after")
    def _budget(self) -> SprintSpec:
        if (
            self.n_trials is None
            and self.timeout_s is None
            and self.budget_cost is None
            and self.budget_seconds is None
        ):
            raise ValueError("a sprint needs a budget: n_trials, timeout_s, budget_cost or budget_seconds")
        if self.n_trials is not None and self.seed_top > self.n_trials:
            raise ValueError(
                f"seed_top ({self.seed_top}) is larger than n_trials ({self.n_trials}): "
                "enqueued seeds count within the sprint's n_trials"
            )
        return self


class ThresholdSpec(_Strict):
    enabled: bool = True
    artifact: str = "val_probs"
    metric: Literal["micro_f1", "macro_f1"] = "micro_f1"
    folds: int = Field(default=5, ge=2, le=20)
    optimizer: Literal["grid", "skopt-gp"] = "grid"


class CacheSpec(_Strict):
    """Memoized pipeline stages (engine.cache.stages): `[cache] enabled = true`."""

    enabled: bool = True
    max_bytes: int | None = Field(
        default=20 * 10**9,
        gt=0,
        description="size limit (bytes, or '500MB', '2GiB'; default 20GB); LRU eviction past it",
    )
    dir: str | None = Field(
        default=None, description="cache directory; relative paths are inside the run directory (default: cache)"
    )
    salt: str = Field(
        default="", description="change it to invalidate every cached stage (e.g. after editing the objective)"
    )
    pin_top: int = Field(
        default=5, ge=0, le=1000, description="best configurations per sprint whose entries are never evicted"
    )

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        try:
            return parse_size(value)
        except ValueError:
            raise ValueError(f"a size in bytes, or with a unit ('500MB', '2GiB'), got {value!r}") from None


class CampaignSpec(_Strict):
    name: str
    description: str = ""
    objective: ObjectiveSpec
    metric: MetricSpec = MetricSpec()
    space: dict[str, ParamSpec]
    fidelity: FidelitySpec
    sprints: list[SprintSpec]
    gate: GateRules = GateRules()
    policy: PolicyName = "auto"
    storage: str | None = None
    workers: int = Field(default=1, ge=1, le=256)
    trial_retries: int = Field(default=1, ge=0, le=10, description="re-runs of a trial whose worker died")
    stale_after_s: float = Field(
        default=20,
        ge=2,
        le=86_400,
        description="on a database storage, a running trial whose worker sent no heartbeat "
        "for this long is failed as stale (and retried)",
    )
    seed: int = 0
    thresholds: ThresholdSpec | None = None
    cache: CacheSpec | None = None

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not CAMPAIGN_NAME.fullmatch(value):
            raise ValueError(CAMPAIGN_NAME_RULE)
        return value

    @model_validator(mode="after")
    def _cross(self) -> CampaignSpec:
        if not self.space:
            raise ValueError("space: at least one parameter is needed")
        if not self.sprints:
            raise ValueError("sprints: at least one sprint is needed")
        names = [s.name for s in self.sprints]
        if len(set(names)) != len(names):
            raise ValueError(f"sprints: names repeat: {names}")
        for i, sprint in enumerate(self.sprints):
            if sprint.fidelity not in self.fidelity.levels:
                raise ValueError(
                    f"sprints.{i}.fidelity: {sprint.fidelity!r} is not a level "
                    f"(levels: {', '.join(self.fidelity.levels)})"
                )
            for p in sprint.params or []:
                if p not in self.space:
                    raise ValueError(f"sprints.{i}.params: {p!r} is not in space")
        return self

    def gate_rules(self, sprint_index: int) -> GateRules:
        return self.sprints[sprint_index].gate or self.gate

    def level_names(self) -> list[str]:
        return list(self.fidelity.levels)


def pydantic_problems(err: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        # Discriminated unions add the tag ('float', ...) to the path; keep the user's keys only.
        loc = [
            p for p in loc if p not in ("float", "int", "categorical", "fixed", "function-after[_check(), FloatParam]")
        ]
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif item["type"] == "union_tag_invalid":
            msg = (
                f"type must be one of float, int, categorical, fixed (got {item.get('input', {}).get('type')!r})"
                if isinstance(item.get("input"), dict)
                else msg
            )
        elif item["type"] == "union_tag_not_found":
            msg = "missing 'type' (float, int, categorical or fixed)"
        elif item["type"] not in ("missing", "value_error") and isinstance(item.get("input"), (str, int, float, bool)):
            msg = f"{msg} (got {item['input']!r:.60})"  # say what was there: a typo is easier to spot
        problems.append((".".join(p for p in loc if not p.startswith("function-")), msg))
    return problems


def parse_campaign(data: dict[str, Any], path: str | Path = "<campaign>") -> CampaignSpec:
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as err:
        raise CampaignFileError(path, pydantic_problems(err)) from None


def load_campaign(path: str | Path) -> CampaignSpec:
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # read a bounded amount: a mistyped path may be a huge log or a device
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise CampaignFileError(
                path, [("", f"file is larger than {MAX_FILE_BYTES // 1024} KiB: not a campaign file")]
            )
    except FileNotFoundError:
        raise CampaignFileError(path, [("", "file not found")]) from None
    except OSError as err:
        raise CampaignFileError(path, [("", f"cannot read: {err.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CampaignFileError(path, [("", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as err:
        raise CampaignFileError(path, [_toml_problem(err, raw.decode("utf-8"))]) from None
    return parse_campaign(data, path)


def _toml_problem(err: tomllib.TOMLDecodeError, text: str) -> tuple[str, str]:
    """A TOML error with its key when it is a repeat, else the offending line quoted."""
    message = str(err)
    where = re.search(r"\(at line (\d+), column \d+\)", message)
    line_no = int(where.group(1)) if where else None
    lines = text.splitlines()
    line = lines[line_no - 1].strip() if line_no and line_no <= len(lines) else ""
    declared = re.match(r"Cannot declare \((.*)\) twice", message)
    if declared:  # a table repeated: [space.lr] twice
        key = ".".join(part.strip(" '\"") for part in declared.group(1).split(",") if part.strip())
        return key, f"declared twice (again at line {line_no}): each parameter and table may appear once"
    # a key repeated in one table (a non-empty `line` implies a line number)
    if message.startswith("Cannot overwrite a value") and "=" in line and line_no is not None:
        table = ""
        for previous in reversed(lines[: line_no - 1]):
            header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+", previous)
            if header:
                table = header.group(1).replace('"', "").replace("'", "")
                break
        key = line.split("=", 1)[0].strip().strip("'\"")
        return f"{table}.{key}" if table else key, f"set twice (again at line {line_no}: {line})"
    return "", f"TOML syntax: {message}" + (f": {line}" if line else "")


def check_objective_imports(spec: CampaignSpec, path: str | Path = "<campaign>") -> None:
    """Import the objective now, so a typo fails at validation rather than in every trial."""
    try:
        load_objective(spec.objective.path)
    except MissingExtra:
        raise  # exit 8 with the extra to install, not a campaign-file error
    except Exception as err:
        raise CampaignFileError(path, [("objective.path", str(err))]) from None
