"""The one training loop shared by every stage that trains (hard-concrete pruning, recovery)."""
