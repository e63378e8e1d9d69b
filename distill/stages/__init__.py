"""The stages: generate, filter, train, eval, imports (one package each)."""
