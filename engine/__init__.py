"""engine: a declarative, configuration-driven routing engine for LLM API requests."""
