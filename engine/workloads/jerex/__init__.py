"""jerex: a joint entity-and-relation extraction workload (CoNLL04-like), offline.

corpus      deterministic generator and the JSON-lines data format
encoder     the shared transformer encoder and its tokenizer ("tiny", a local directory, a package)
features    sentences -> sub-token features and padded batches
model       entity (BIO) and relation (sigmoid per type) heads over the shared encoder
metrics     entity F1 and relation micro-F1
training    optimizer parameter groups, the multiphase LR schedule, epochs
objective   the campaign objective: `engine.workloads.jerex.objective:objective`
"""
