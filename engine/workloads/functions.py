"""Cheap multi-fidelity test functions, in the style of the multi-fidelity benchmark literature.

Size (~600 lines): eight problems with their published constants and fidelity forms; mostly data.

Every problem is a *minimisation* over a box, with a continuous fidelity ``z`` in [0, 1]:
``z = 1`` is the high fidelity (the truth, noise free), lower ``z`` is biased (the literature's
low-fidelity form) and noisy (Gaussian noise whose standard deviation grows as ``1 - z``).

========  ===  ==================================================================  ==============
name      dim  fidelity form                                                       optimum (z=1)
========  ===  ==================================================================  ==============
branin      2  Kandasamy et al. 2017 (BOCA): b, c, t shifted by (1 - z)            0.397887
hartmann6   6  Kandasamy et al. 2017 / BoTorch AugmentedHartmann: a1 - 0.1(1 - z)  -3.32237
currin      2  Xiong et al. 2013 low form, mixed: z f_h + (1 - z) f_l; negated     -13.7987
park        4  Park 1991 / Xiong et al. 2013 low form, mixed; negated               corner (1,1,1,1)
borehole    8  Xiong et al. 2013 low form, mixed; r on a log scale                 corner
train_mlp   5  short runs prefer larger lr, less weight decay/dropout, shallower   0.0801
train_cnn   5  short runs prefer larger effective lr, less regularisation, narrower 0.0500
wells8      8  four wells; at low fidelity a broad local well is the deepest        -1.2329
========  ===  ==================================================================  ==============

``train_mlp`` and ``train_cnn`` are training-like surfaces (log learning rate and weight decay,
integer batch size / depth / width) whose full fidelity is noisy too (``noise_full_frac``): the
class where a phased campaign's first gate is at risk of narrowing on a biased fidelity.

Currin and Park are classically maximised; here they are negated so every problem minimises.
Park's and Borehole's optima sit at a corner of the box (they are monotone in most inputs): a
useful check that narrowing does not cut off an optimum sitting on a bound.

Pure API::

    from engine.workloads.functions import PROBLEMS
    p = PROBLEMS["hartmann6"]
    p.value({"x1": 0.2, ...}, fidelity=0.3, noise_seed=0)   # biased + noisy
    p.value(p.x_opt, 1.0, None)                             # == p.f_opt
    p.regret(x)                                             # high fidelity minus optimum, >= 0

Campaign objectives (the engine.objective contract): ``branin``, ``hartmann6``, ``currin``,
``park``, ``borehole``. Each reads

* ``ctx.params``: the problem's parameters (``x1`` ... ``xd``; Borehole uses its physical names),
* ``ctx.fidelity["fidelity"]`` or else ``ctx.fidelity["train_fraction"]``: the fidelity ``z``
  (default 1),
* ``ctx.fidelity["epochs"]``: the number of steps (default 1),
* ``ctx.settings``: ``noise_seed`` (default 0; ``None`` switches noise off), ``sleep_per_step``
  (seconds, default 0), ``report`` (``"regret"``, the default, or ``"value"``), ``curve_tau``
  (epochs, default 4).

It reports one intermediate value per epoch, a learning curve that starts pessimistic by a
configuration-dependent gap and converges to the fidelity's value (``gap * exp(-(t + 1) / tau)``
remains after step t), so that early stopping has something real to judge. It returns the value
at the last epoch. With ``report = "regret"`` (the default) every value is shifted by the known
optimum, so the high fidelity is >= 0 and 0 at the optimum. All of it is deterministic given the
parameters, the fidelity, the step and ``noise_seed`` (the noise comes from a hash of those).
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Param",
    "Problem",
    "PROBLEMS",
    "branin",
    "hartmann6",
    "currin",
    "park",
    "borehole",
    "train_mlp",
    "train_cnn",
    "wells8",
    "fidelity_of",
    "learning_curve",
]


@dataclass(frozen=True)
class Param:
    low: float
    high: float
    log: bool = False
    integer: bool = False  # an int parameter in campaign files; from_unit rounds

    def to_unit(self, v: float) -> float:
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        """The inverse of to_unit."""
        if self.log:
            v = math.exp(math.log(self.low) + u * math.log(self.high / self.low))
        else:
            v = self.low + u * (self.high - self.low)
        return int(min(max(round(v), self.low), self.high)) if self.integer else v


@dataclass(frozen=True)
class Problem:
    """A box-constrained minimisation with a continuous fidelity z in [0, 1]."""

    name: str
    space: dict[str, Param]
    f: Callable[[np.ndarray, float], float]  # (x in natural units, z) -> biased value, no noise
    f_opt: float
    x_opt: dict[str, float]
    scale: float  # typical spread of the high fidelity (std over the box): sets noise and curve sizes
    noise_frac: float = 0.05  # noise sd at z = 0, as a fraction of `scale`
    noise_full_frac: float = 0.0  # noise sd at z = 1 (a training run's seed-to-seed spread), fraction of `scale`
    references: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.space)

    @property
    def names(self) -> list[str]:
        return list(self.space)

    def array(self, x: Mapping[str, Any]) -> np.ndarray:
        missing = [n for n in self.space if n not in x]
        if missing:
            raise KeyError(f"{self.name}: missing parameters {missing}")
        return np.array([float(x[n]) for n in self.space], dtype=float)

    def noise_sd(self, fidelity: float) -> float:
        return self.scale * (self.noise_frac * (1.0 - _clip_z(fidelity)) + self.noise_full_frac)

    def value(
        self, x: Mapping[str, Any], fidelity: float = 1.0, noise_seed: int | None = None, step: int | None = None
    ) -> float:
        """The (minimised) value at fidelity z; noise free when noise_seed is None (or at z = 1 without
        noise_full_frac)."""
        z = _clip_z(fidelity)
        v = float(self.f(self.array(x), z))
        sd = self.noise_sd(z)
        if noise_seed is not None and sd > 0:
            v += sd * _hash_normal(self.name, x, z, step, noise_seed)
        return v

    def regret(self, x: Mapping[str, Any]) -> float:
        """Simple regret of x: its noise-free high-fidelity value minus the optimum (>= 0)."""
        return max(0.0, self.value(x, 1.0, None) - self.f_opt)

    def unit(self, x: Mapping[str, Any]) -> np.ndarray:
        return np.array([p.to_unit(float(x[n])) for n, p in self.space.items()])

    def space_toml(self) -> str:
        """The [space.*] tables of a campaign file for this problem."""
        lines = []
        for n, p in self.space.items():
            kind = "int" if p.integer else "float"
            low, high = (int(p.low), int(p.high)) if p.integer else (p.low, p.high)
            lines += [f"[space.{n}]", f'type = "{kind}"', f"low = {low!r}", f"high = {high!r}"]
            if p.log:
                lines.append("log = true")
            lines.append("")
        return "\n".join(lines)


def _clip_z(z: float) -> float:
    z = float(z)
    if not math.isfinite(z):
        raise ValueError(f"fidelity must be finite, got {z}")
    return min(1.0, max(0.0, z))


def _hash_normal(name: str, x: Mapping[str, Any], z: float, step: int | None, seed: int) -> float:
    """A standard normal draw that depends only on (problem, params, fidelity, step, seed)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(name.encode())
    for key in sorted(x):
        h.update(key.encode())
        h.update(struct.pack("<d", float(x[key])))
    h.update(struct.pack("<d", round(z, 12)))
    h.update(struct.pack("<q", -1 if step is None else int(step)))
    h.update(struct.pack("<q", int(seed)))
    s1, s2 = struct.unpack("<QQ", h.digest())
    # Box-Muller on two uniforms in (0, 1)
    u1 = (s1 + 0.5) / 2.0**64
    u2 = (s2 + 0.5) / 2.0**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# ---------------------------------------------------------------------------------------------
# Branin: Kandasamy et al. (2017), "Multi-fidelity Bayesian optimisation with continuous
# approximations" (BOCA), with the three fidelity coordinates tied to one z.
_B0, _C0, _T0 = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)


def _branin(x: np.ndarray, z: float) -> float:
    x1, x2 = x
    b = _B0 - 0.01 * (1 - z)
    c = _C0 - 0.1 * (1 - z)
    t = _T0 + 0.05 * (1 - z)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1 - t) * math.cos(x1) + 10.0


# Hartmann-6: Kandasamy et al. (2017); BoTorch's AugmentedHartmann (alpha_1 - 0.1 (1 - z)).
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def _hartmann6(x: np.ndarray, z: float) -> float:
    alpha = _H6_ALPHA.copy()
    alpha[0] -= 0.1 * (1 - z)
    inner = np.sum(_H6_A * (x[None, :] - _H6_P) ** 2, axis=1)
    return float(-np.sum(alpha * np.exp(-inner)))


# Currin exponential: Currin et al. (1991); low fidelity from Xiong et al. (2013). Negated.
def _currin_high(x1: float, x2: float) -> float:
    factor = 1.0 if x2 <= 0 else 1.0 - math.exp(-1.0 / (2.0 * x2))
    return factor * (2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60) / (100 * x1**3 + 500 * x1**2 + 4 * x1 + 20)


def _currin_low(x1: float, x2: float) -> float:
    lo = max(0.0, x2 - 0.05)
    return 0.25 * (
        _currin_high(x1 + 0.05, x2 + 0.05)
        + _currin_high(x1 + 0.05, lo)
        + _currin_high(x1 - 0.05, x2 + 0.05)
        + _currin_high(x1 - 0.05, lo)
    )


def _currin(x: np.ndarray, z: float) -> float:
    x1, x2 = float(x[0]), float(x[1])
    hi = _currin_high(x1, x2)
    if z >= 1:
        return -hi
    return -(z * hi + (1 - z) * _currin_low(x1, x2))


# Park (1991) function 1, low fidelity from Xiong et al. (2013). Negated (maximised classically).
def _park_high(x: np.ndarray) -> float:
    x1, x2, x3, x4 = x
    a = (x2 + x3**2) * x4
    # x1/2 (sqrt(1 + a / x1^2) - 1), rewritten so x1 = 0 is defined
    first = 0.5 * (math.sqrt(x1 * x1 + a) - x1)
    return first + (x1 + 3 * x4) * math.exp(1 + math.sin(x3))


def _park_low(x: np.ndarray) -> float:
    x1, x2, x3, _ = x
    return (1 + math.sin(x1) / 10) * _park_high(x) - 2 * x1 + x2**2 + x3**2 + 0.5


def _park(x: np.ndarray, z: float) -> float:
    hi = _park_high(x)
    if z >= 1:
        return -hi
    return -(z * hi + (1 - z) * _park_low(x))


# Borehole (Harper & Gupta 1983; Morris et al. 1993), low fidelity from Xiong et al. (2013).
_BOREHOLE_SPACE = {
    "rw": Param(0.05, 0.15),
    "r": Param(100.0, 50000.0, log=True),
    "Tu": Param(63070.0, 115600.0),
    "Hu": Param(990.0, 1110.0),
    "Tl": Param(63.1, 116.0),
    "Hl": Param(700.0, 820.0),
    "L": Param(1120.0, 1680.0),
    "Kw": Param(9855.0, 12045.0),
}


def _borehole_parts(x: np.ndarray) -> tuple[float, float, float]:
    rw, r, tu, hu, tl, hl, length, kw = x
    lg = math.log(r / rw)
    num = tu * (hu - hl)
    rest = 2 * length * tu / (lg * rw**2 * kw) + tu / tl
    return num, lg, rest


def _borehole(x: np.ndarray, z: float) -> float:
    num, lg, rest = _borehole_parts(x)
    hi = 2 * math.pi * num / (lg * (1 + rest))
    if z >= 1:
        return hi
    lo = 5 * num / (lg * (1.5 + rest))
    return z * hi + (1 - z) * lo


# ---------------------------------------------------------------------------------------------
# Training-like surfaces: the class where short, low-fidelity runs mislead. Short runs prefer a
# larger learning rate, less regularisation and a smaller model than full training (the bias of
# short-horizon tuning: Wu et al. 2018, "Understanding short-horizon bias in stochastic
# meta-optimization"); full-fidelity values are noisy (seed-to-seed spread of a training run).
# u = 1 - z is the distance from full fidelity.


def _softplus(v: float) -> float:
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


_TRAIN_MLP_SPACE = {
    "lr": Param(1e-5, 1.0, log=True),
    "weight_decay": Param(1e-7, 1e-1, log=True),
    "batch_size": Param(16, 1024, log=True, integer=True),
    "depth": Param(1, 8, integer=True),
    "dropout": Param(0.0, 0.7),
}


def _train_mlp(x: np.ndarray, z: float) -> float:
    """An MLP's validation loss: quadratic valleys in log lr / log wd, the linear scaling rule between
    learning rate and batch size, divergence past a batch-dependent learning rate."""
    lr, wd, bs, depth, dropout = x
    u = 1.0 - z
    lg, w, b = math.log10(lr), math.log10(wd), math.log2(bs)
    l_opt = -2.5 + 0.35 * (b - 7.0) + 1.4 * u
    w_opt = -3.5 - 3.0 * u
    p_opt = max(0.0, 0.3 - 0.35 * u)
    d_opt = 5.0 - 3.0 * u
    loss = 0.08 + 0.3 * u
    loss += 0.06 * (lg - l_opt) ** 2
    loss += (0.004 + 0.012 * z) * (w - w_opt) ** 2  # regularisation matters once training is long
    loss += (0.08 + 0.22 * z) * (dropout - p_opt) ** 2
    loss += 0.01 * (depth - d_opt) ** 2 + 0.01 * (b - 7.0) ** 2
    loss += 0.125 * _softplus(4.0 * (lg - (-0.7 + 0.35 * (b - 7.0))))  # divergence
    return loss


_TRAIN_CNN_SPACE = {
    "lr": Param(1e-4, 3.0, log=True),
    "momentum": Param(0.5, 0.99),
    "weight_decay": Param(1e-6, 1e-2, log=True),
    "label_smoothing": Param(0.0, 0.3),
    "width": Param(8, 256, log=True, integer=True),
}


def _train_cnn(x: np.ndarray, z: float) -> float:
    """A CNN's validation error: bounded valleys (far from the optimum everything is equally bad, as
    with accuracy) in the effective learning rate lr / (1 - momentum) and log wd, a wider model
    better only when training is long, and a divergence cliff."""
    lr, momentum, wd, smoothing, width = x
    u = 1.0 - z
    e = math.log10(lr / (1.0 - momentum))
    w, k = math.log10(wd), math.log2(width)
    e_opt = -0.4 + 1.0 * u
    w_opt = -3.7 - 2.0 * u
    k_opt = 7.0 - 3.0 * u
    err = 0.05 + 0.25 * u
    err += 0.45 * (1.0 - math.exp(-0.5 * ((e - e_opt) / 0.7) ** 2))
    err += (0.05 + 0.12 * z) * (1.0 - math.exp(-0.5 * ((w - w_opt) / 1.0) ** 2))
    err += (0.1 + 0.4 * z) * (smoothing - 0.1 * z) ** 2
    err += 0.012 * (k - k_opt) ** 2 + 0.05 * (momentum - 0.9) ** 2
    err += 0.5 / (1.0 + math.exp(-6.0 * (e - 1.3)))  # divergence
    return err


# A multimodal 8-D problem whose cheap sprint can settle in the wrong basin: four heavy-tailed wells;
# the global one (narrower) is the deepest only at full fidelity, at low fidelity a broad local well wins.
_WELLS_CENTRES = np.array(
    [
        [0.78, 0.22, 0.65, 0.30, 0.84, 0.17, 0.55, 0.71],
        [0.25, 0.70, 0.30, 0.75, 0.20, 0.66, 0.35, 0.28],
        [0.60, 0.85, 0.80, 0.15, 0.45, 0.40, 0.12, 0.85],
        [0.15, 0.35, 0.15, 0.55, 0.70, 0.85, 0.80, 0.40],
    ]
)
_WELLS_SCALE = np.array([0.22, 0.4, 0.35, 0.35])


def _wells8(x: np.ndarray, z: float) -> float:
    u = 1.0 - z
    depth = np.array([1.0 - 0.4 * u, 0.85, 0.8, 0.75])
    d2 = np.sum((x[None, :] - _WELLS_CENTRES) ** 2, axis=1)
    return float(-np.sum(depth / (1.0 + d2 / _WELLS_SCALE**2)))


def _unit_names(d: int) -> dict[str, Param]:
    return {f"x{i + 1}": Param(0.0, 1.0) for i in range(d)}


_HARTMANN6_XOPT = [0.20168952, 0.15001069, 0.47687398, 0.27533243, 0.31165162, 0.65730054]

PROBLEMS: dict[str, Problem] = {
    "branin": Problem(
        name="branin",
        space={"x1": Param(-5.0, 10.0), "x2": Param(0.0, 15.0)},
        f=_branin,
        f_opt=0.39788735772973816,
        x_opt={"x1": math.pi, "x2": 2.275},
        scale=51.0,
        references="Branin (1972); continuous fidelity of Kandasamy et al. (2017, BOCA)",
        extra={"argmins": [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)]},
    ),
    "hartmann6": Problem(
        name="hartmann6",
        space=_unit_names(6),
        f=_hartmann6,
        f_opt=-3.3223680114155147,
        x_opt={f"x{i + 1}": v for i, v in enumerate(_HARTMANN6_XOPT)},
        scale=0.38,
        references="Hartmann (1973); fidelity of Kandasamy et al. (2017) / BoTorch AugmentedHartmann",
    ),
    "currin": Problem(
        name="currin",
        space=_unit_names(2),
        f=_currin,
        f_opt=-13.798722044728434,
        x_opt={"x1": 0.21666666666666667, "x2": 0.0},
        scale=2.6,
        references="Currin et al. (1991); low fidelity of Xiong, Qian & Wu (2013)",
    ),
    "park": Problem(
        name="park",
        space=_unit_names(4),
        f=_park,
        f_opt=-_park_high(np.ones(4)),
        x_opt={f"x{i + 1}": 1.0 for i in range(4)},
        scale=5.4,
        references="Park (1991); low fidelity of Xiong, Qian & Wu (2013)",
    ),
    "borehole": Problem(
        name="borehole",
        space=_BOREHOLE_SPACE,
        f=_borehole,
        f_opt=0.0,  # filled below from the corner
        x_opt={
            "rw": 0.05,
            "r": 50000.0,
            "Tu": 63070.0,
            "Hu": 990.0,
            "Tl": 63.1,
            "Hl": 820.0,
            "L": 1680.0,
            "Kw": 9855.0,
        },
        scale=45.0,
        references="Harper & Gupta (1983); low fidelity of Xiong, Qian & Wu (2013)",
    ),
    "train_mlp": Problem(
        name="train_mlp",
        space=_TRAIN_MLP_SPACE,
        f=_train_mlp,
        f_opt=0.08009271574357352,
        x_opt={
            "lr": 0.003139998786410434,
            "weight_decay": 0.0003162277560000926,
            "batch_size": 128,
            "depth": 5,
            "dropout": 0.30000000308071373,
        },
        scale=0.35,
        noise_full_frac=0.01,
        references="training-like surface with short-horizon bias (Wu et al. 2018); this repository",
    ),
    "train_cnn": Problem(
        name="train_cnn",
        space=_TRAIN_CNN_SPACE,
        f=_train_cnn,
        f_opt=0.050018577704484105,
        x_opt={
            "lr": 0.039799598689691885,
            "momentum": 0.8999999957648218,
            "weight_decay": 0.00019952623149123105,
            "label_smoothing": 0.10000000130600398,
            "width": 128,
        },
        scale=0.2,
        noise_full_frac=0.01,
        references="training-like surface with short-horizon bias (Wu et al. 2018); this repository",
    ),
    "wells8": Problem(
        name="wells8",
        space=_unit_names(8),
        f=_wells8,
        f_opt=-1.2329011224594697,
        x_opt={
            f"x{i + 1}": v
            for i, v in enumerate(
                [
                    0.7768594512630489,
                    0.22417700258523068,
                    0.6490365891906978,
                    0.3006482069636773,
                    0.8366409835588178,
                    0.17340360634381508,
                    0.5480771189451268,
                    0.7092209036454544,
                ]
            )
        },
        scale=0.15,
        references="four heavy-tailed wells in 8-D; the global one is the deepest only at full fidelity; this repository",
    ),
}
object.__setattr__(
    PROBLEMS["borehole"], "f_opt", _borehole(PROBLEMS["borehole"].array(PROBLEMS["borehole"].x_opt), 1.0)
)


# ---------------------------------------------------------------------------------------------
# Campaign objectives


def fidelity_of(fidelity: Mapping[str, Any]) -> float:
    """The continuous fidelity z from a level's knobs: 'fidelity', else 'train_fraction', else 1."""
    for knob in ("fidelity", "train_fraction"):
        if knob in fidelity:
            return _clip_z(float(fidelity[knob]))
    return 1.0


def _curve_gap(problem: Problem, x: Mapping[str, Any]) -> float:
    """How pessimistic a configuration starts: smooth in x, between 0.25 and 0.75 x scale."""
    u = problem.unit(x)
    w = np.arange(1, len(u) + 1, dtype=float)
    s = 0.5 * (1.0 + math.sin(2.0 * math.pi * float(np.dot(w, u)) / len(u) + 0.7))
    return problem.scale * (0.25 + 0.5 * s)


def learning_curve(
    problem: Problem, x: Mapping[str, Any], fidelity: float, step: int, noise_seed: int | None, tau: float = 4.0
) -> float:
    """Value after step+1 epochs: the fidelity's value plus a decaying gap, plus step noise."""
    z = _clip_z(fidelity)
    base = problem.value(x, z, noise_seed)
    gap = _curve_gap(problem, x) * math.exp(-(step + 1) / tau)
    v = base + gap
    if noise_seed is not None:
        # extra per-step jitter, shrinking as training converges; zero at z = 1 once converged
        sd = 0.02 * problem.scale * math.exp(-(step + 1) / tau) + problem.noise_sd(z) * 0.2
        v += sd * _hash_normal(problem.name + "/step", x, z, step, noise_seed)
    return v


def run_problem(problem: Problem, ctx: Any) -> float:
    settings = dict(ctx.settings or {})
    z = fidelity_of(ctx.fidelity)
    epochs = max(1, int(ctx.fidelity.get("epochs", 1)))
    noise_seed = settings.get("noise_seed", 0)
    sleep = float(settings.get("sleep_per_step", 0.0))
    tau = float(settings.get("curve_tau", 4.0))
    report = settings.get("report", "regret")
    if report not in ("regret", "value"):
        raise ValueError(f"settings.report must be 'regret' or 'value', got {report!r}")
    shift = problem.f_opt if report == "regret" else 0.0
    x = {n: ctx.params[n] for n in problem.space}
    value = math.nan
    for step in range(epochs):
        if sleep > 0:
            time.sleep(sleep)
        value = learning_curve(problem, x, z, step, noise_seed, tau) - shift
        ctx.report(value, step)
    ctx.set_attr("true_regret", problem.regret(x))
    return value


def branin(ctx: Any) -> float:
    """Branin (2-D, x1 in [-5, 10], x2 in [0, 15]); minimise."""
    return run_problem(PROBLEMS["branin"], ctx)


def hartmann6(ctx: Any) -> float:
    """Hartmann-6 (x1..x6 in [0, 1]); minimise."""
    return run_problem(PROBLEMS["hartmann6"], ctx)


def currin(ctx: Any) -> float:
    """Negated Currin exponential (x1, x2 in [0, 1]); minimise."""
    return run_problem(PROBLEMS["currin"], ctx)


def park(ctx: Any) -> float:
    """Negated Park function 1 (x1..x4 in [0, 1]); minimise."""
    return run_problem(PROBLEMS["park"], ctx)


def borehole(ctx: Any) -> float:
    """Borehole water flow (8-D, physical units, r log-scale); minimise."""
    return run_problem(PROBLEMS["borehole"], ctx)


def train_mlp(ctx: Any) -> float:
    """Training-like MLP surface (log lr and weight decay, int batch size and depth, dropout); minimise."""
    return run_problem(PROBLEMS["train_mlp"], ctx)


def train_cnn(ctx: Any) -> float:
    """Training-like CNN surface (log lr, momentum, log weight decay, label smoothing, int width); minimise."""
    return run_problem(PROBLEMS["train_cnn"], ctx)


def wells8(ctx: Any) -> float:
    """Four wells in 8-D (x1..x8 in [0, 1]); the low fidelity prefers a local one; minimise."""
    return run_problem(PROBLEMS["wells8"], ctx)
