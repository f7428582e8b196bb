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
