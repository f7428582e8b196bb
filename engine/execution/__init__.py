"""Running trials: the sprint study, ask/tell of one trial, worker processes and the pool that supervises them."""
