"""Packaged copies of models/llm and models/gpu (mapped in pyproject.toml)."""
