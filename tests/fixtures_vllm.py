"""vLLM fixtures (one engine and one server per test session) — filled in by the generate work."""
