"""The search itself: the space, samplers (Optuna, scikit-optimize, cost-aware GP), pruners and parameter importance."""
