"""Process-level resolution: which container a caller pid belongs to."""
