"""An objective module that fails at import (a dependency missing on this host): `hpo-tui validate`
must say which module and why, not show a traceback."""

import fancy_accelerator_that_is_not_installed  # noqa: F401


def objective(ctx):
    return 0.0
