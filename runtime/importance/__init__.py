"""Importance of coupled groups: Taylor (LLM-Pruner), magnitude and activation (Minitron) scores; top-k selection."""
