"""A small third-party backend: the numpy model run one row at a time (no batched decoder)."""
