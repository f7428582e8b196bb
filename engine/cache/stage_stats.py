"""`hpo-tui cache`'s figures: hits, misses, compute and time saved per stage and sprint (from the trials'
`stages` attributes), and the cache's entries and size."""

from __future__ import annotations

from typing import Any

from engine.cache.stage_cache import Entry, StageCache
from engine.store.schema import DURATION_ATTR, INHERITED_ATTR, STAGES_ATTR
from engine.units import duration, format_size


def stage_stats(trials_by_sprint: dict[str, list], cache: StageCache | None = None) -> dict[str, Any]:
    """Hits, misses, compute time, time saved, per stage and per sprint, plus the cache's size."""
    per_stage: dict[str, dict[str, float]] = {}
    per_sprint: dict[str, dict[str, float]] = {}
    total = {
        "hits": 0,
        "misses": 0,
        "uncached": 0,
        "corrupt": 0,
        "compute_s": 0.0,
        "saved_s": 0.0,
        "trial_s": 0.0,
        "inherited": 0,
        "inherited_saved_s": 0.0,
    }
    for sprint, trials in trials_by_sprint.items():
        row = per_sprint.setdefault(sprint, {"trials": 0, "hits": 0, "misses": 0, "trial_s": 0.0, "saved_s": 0.0})
        for t in trials:
            attrs = t.user_attrs
            if DURATION_ATTR in attrs:
                row["trials"] += 1
                row["trial_s"] += float(attrs[DURATION_ATTR])
                total["trial_s"] += float(attrs[DURATION_ATTR])
            for name, rec in (attrs.get(STAGES_ATTR) or {}).items():
                if not isinstance(rec, dict):
                    continue
                s = per_stage.setdefault(
                    name, {"hits": 0, "misses": 0, "uncached": 0, "compute_s": 0.0, "saved_s": 0.0}
                )
                if rec.get("hit"):
                    kind = "hits"
                    saved = float(rec.get("saved_s", 0.0))
                    s["saved_s"] += saved
                    row["saved_s"] += saved
                    total["saved_s"] += saved
                elif rec.get("cached"):
                    kind = "misses"
                    s["compute_s"] += float(rec.get("seconds", 0.0))
                    total["compute_s"] += float(rec.get("seconds", 0.0))
                else:
                    kind = "uncached"
                    s["compute_s"] += float(rec.get("seconds", 0.0))
                    total["compute_s"] += float(rec.get("seconds", 0.0))
                s[kind] += 1
                total[kind] += 1
                if kind in ("hits", "misses"):
                    row[kind] += 1
                if rec.get("corrupt"):
                    total["corrupt"] += 1
            inherited = attrs.get(INHERITED_ATTR)
            if isinstance(inherited, dict):
                total["inherited"] += 1
                total["inherited_saved_s"] += float(inherited.get("saved_s", 0.0))
    entries = cache.entries() if cache is not None else []
    return {
        "total": total,
        "stages": per_stage,
        "sprints": per_sprint,
        "cache": {
            "dir": str(cache.root) if cache is not None else None,
            "entries": len(entries),
            "bytes": sum(e.size for e in entries),
            "max_bytes": cache.max_bytes if cache is not None else None,
            "by_stage": _by_stage(entries),
        },
    }


def _by_stage(entries: list[Entry]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for e in entries:
        row = out.setdefault(e.stage, {"entries": 0, "bytes": 0})
        row["entries"] += 1
        row["bytes"] += e.size
    return out


def format_stats(name: str, stats: dict[str, Any]) -> str:
    t, c = stats["total"], stats["cache"]
    lookups = t["hits"] + t["misses"]
    rate = f"{100 * t['hits'] / lookups:.0f}%" if lookups else "-"
    saved_total = t["saved_s"] + t["inherited_saved_s"]
    lines = [
        f"stage cache of {name}: {c['entries']} entries, {format_size(c['bytes'])}"
        + (f" of {format_size(c['max_bytes'])}" if c.get("max_bytes") else "")
        + (f" in {c['dir']}" if c["dir"] else " (caching off)"),
        f"hits {t['hits']}, misses {t['misses']} (hit rate {rate}), uncached runs {t['uncached']}, "
        f"corrupt entries recomputed {t['corrupt']}",
        f"trial time spent {duration(t['trial_s'])}, stage compute {duration(t['compute_s'])}, "
        f"saved by hits {duration(t['saved_s'])}, by inherited checkpoints {duration(t['inherited_saved_s'])} "
        f"({t['inherited']} trials); saved in all {duration(saved_total)}",
    ]
    if stats["stages"]:
        lines.append(
            f"{'stage':<20}{'hits':>6}{'misses':>8}{'uncached':>10}{'compute':>10}{'saved':>10}{'entries':>9}{'size':>10}"
        )
        for stage, s in stats["stages"].items():
            e = c["by_stage"].get(stage, {"entries": 0, "bytes": 0})
            lines.append(
                f"{stage[:19]:<20}{s['hits']:>6}{s['misses']:>8}{s['uncached']:>10}{duration(s['compute_s']):>10}"
                f"{duration(s['saved_s']):>10}{e['entries']:>9}{format_size(e['bytes']):>10}"
            )
    if stats["sprints"]:
        lines.append(f"{'sprint':<20}{'trials':>7}{'hits':>6}{'misses':>8}{'spent':>10}{'saved':>10}")
        for sprint, s in stats["sprints"].items():
            lines.append(
                f"{sprint[:19]:<20}{s['trials']:>7}{s['hits']:>6}{s['misses']:>8}"
                f"{duration(s['trial_s']):>10}{duration(s['saved_s']):>10}"
            )
    return "\n".join(lines)
