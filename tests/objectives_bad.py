"""Objectives that misbehave on purpose, to prove a bad trial fails with its reason and the sprint goes on."""

from __future__ import annotations

import os
import signal


def _common(ctx):
    return ctx.params["x1"]


def flaky(ctx):
    """Raises, returns NaN, or succeeds, depending on the parameters."""
    x = _common(ctx)
    if x < -2:
        raise RuntimeError("diverged: loss exploded")
    if x < 1:
        return float("nan")
    return x


def suicidal(ctx):
    """The first trial kills its own worker process (as the OOM killer would)."""
    marker = ctx.run_dir / "killed-once"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return ctx.params["x1"] ** 2
