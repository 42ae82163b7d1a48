"""Importance of coupled groups: Taylor (LLM-Pruner) and magnitude scores, and top-k selection."""
