"""Objectives that misbehave in every way issue 5 lists, chosen by the categorical parameter `mode`.

Memory is capped with RLIMIT_AS inside the trial (and the cap lifted afterwards), so exhausting it
costs the machine a few dozen MiB at most.
"""

from __future__ import annotations

import resource
import time

MODES = ["nan", "inf", "string", "none", "raise", "hang", "memory", "ok"]


def _exhaust_memory() -> None:
    import numpy as np
    import psutil

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = psutil.Process().memory_info().vms + 64 * 2**20  # 64 MiB more than we have
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        hoard = []
        for _ in range(1000):  # 32 GiB wanted
            hoard.append(np.ones(4 * 2**20))  # 32 MiB each
    finally:
        hoard = None
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def misbehave(ctx):
    mode = ctx.params["mode"]
    if mode == "nan":
        return float("nan")
    if mode == "inf":
        return float("-inf")
    if mode == "string":
        return "0.93 accuracy"
    if mode == "none":
        return None
    if mode == "raise":
        raise ValueError("labels and logits have different shapes (32,) vs (32, 7)")
    if mode == "hang":
        while True:  # past objective.timeout_s
            time.sleep(0.05)
    if mode == "memory":
        _exhaust_memory()
        return 0.0
    return ctx.params["x"] ** 2


# Issue 14: objectives that fight the engine's control flow, chosen by trial number (settings lists).


def _settled(ctx) -> float:
    time.sleep(float(ctx.settings.get("sleep", 0.0)))
    return (ctx.params["x"] - 0.3) ** 2


def control_flow(ctx):
    """SystemExit(3) in the trials of `exit_trials`, KeyboardInterrupt in those of `interrupt_trials`."""
    if ctx.trial_number in ctx.settings.get("exit_trials", []):
        raise SystemExit(3)
    if ctx.trial_number in ctx.settings.get("interrupt_trials", []):
        raise KeyboardInterrupt
    return _settled(ctx)


def stubborn(ctx):
    """Defeats SIGALRM: swallows every exception (`swallow_trials`), or blocks the signal (`block_trials`),
    or catches the timeout and returns late (`late_trials`)."""
    import signal

    if ctx.trial_number in ctx.settings.get("swallow_trials", []):
        while True:
            try:
                time.sleep(0.05)
            except BaseException:  # the point: the TrialTimeout (and SIGTERM's Stop) are swallowed
                pass
    if ctx.trial_number in ctx.settings.get("block_trials", []):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # pending, never delivered
        while True:
            time.sleep(0.05)
    if ctx.trial_number in ctx.settings.get("late_trials", []):
        deadline = time.monotonic() + float(ctx.settings["late_s"])
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except BaseException:
                pass
    return _settled(ctx)


def chatty(ctx):
    """Prints `print_mb` MiB per trial, from Python and from a child process sharing stdout."""
    import subprocess
    import sys

    line = "x" * 1023 + "\n"
    for _ in range(int(ctx.settings.get("print_mb", 1)) * 1024):
        sys.stdout.write(line)
    sys.stdout.flush()
    subprocess.run([sys.executable, "-c", "print('child process output', flush=True)"], check=True)
    return _settled(ctx)
