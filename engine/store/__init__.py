"""The storage layer: schema, typed records, the Optuna storage, the campaign ledger, queries over it, the coordinator lease and journal repair. It imports nothing above it."""
