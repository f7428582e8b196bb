"""A 1-D objective whose low fidelity hides the optimum: the constructed case for re-opening.

Low fidelity (knob z = 0): one basin at x = 0.3. Higher fidelity (z = 1): that basin is a local one
(value 0.3) and the global optimum (value 0) sits at x = 0.85, where the low fidelity sees nothing.
"""


def true_value(x: float) -> float:
    return min((x - 0.3) ** 2 + 0.3, 1.5 * (x - 0.85) ** 2)


def biased(ctx):
    x = float(ctx.params["x"])
    value = (x - 0.3) ** 2 if float(ctx.fidelity["z"]) < 1 else true_value(x)
    for step in range(int(ctx.fidelity["epochs"])):
        ctx.report(value + 0.1 / (step + 1), step)
    return value
