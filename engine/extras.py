"""Optional dependencies: which pip extra brings what, and a clear error when one is missing.

The core install (attach, approve, status, the CLI) has no torch, transformers or database driver;
commands that need one check here first and name the extra to install (`MissingExtra`, exit 8).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from engine.errors import MissingExtra

if TYPE_CHECKING:
    from engine.spec import CampaignSpec

# The Python modules each extra provides (pyproject.toml's [project.optional-dependencies]).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "gp": ("torch",),
    "jerex": ("torch", "transformers"),
    "hf": ("torch", "transformers", "accelerate"),
    "postgres": ("psycopg",),
}

# Samplers that need an extra (the others ship with the core install).
SAMPLER_EXTRAS: dict[str, str] = {"gp": "gp", "eeipu-gp": "gp", "mf-gp": "gp"}

# Shipped workloads (objective modules under these packages) and the extra each needs.
WORKLOAD_EXTRAS: dict[str, str] = {
    "engine.workloads.jerex": "jerex",
    "engine.workloads.trainer_classifier": "hf",
}

POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg://")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install counts as missing
        return False


def missing_modules(extra: str) -> list[str]:
    return [name for name in EXTRA_MODULES[extra] if not installed(name)]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def require(extra: str, what: str) -> None:
    """Raise MissingExtra naming the extra when any of its modules is not installed."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(
            f"{what} needs {_and(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'hpo-tui[{extra}]'"
        )


def require_for_sampler(name: str) -> None:
    extra = SAMPLER_EXTRAS.get(name)
    if extra is not None:
        require(extra, f"the {name!r} sampler")


def require_for_objective(module: str) -> None:
    for package, extra in WORKLOAD_EXTRAS.items():
        if module == package or module.startswith(package + "."):
            require(extra, f"the {package.rsplit('.', 1)[-1]} workload")


def require_for_storage(url: str) -> None:
    """A postgresql:// URL needs psycopg 3 (SQLAlchemy's default PostgreSQL driver)."""
    if url.startswith(POSTGRES_SCHEMES):
        require("postgres", "a postgresql:// storage")


def require_for_campaign(spec: CampaignSpec) -> None:
    """Before a campaign starts: every sprint's sampler can be built on this host."""
    for sprint in spec.sprints:
        require_for_sampler(sprint.sampler)
