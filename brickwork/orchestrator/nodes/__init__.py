"""The graph's nodes: each a small function ``(state, runtime) -> partial update``."""
