"""Tier-1 tests of the render core (t1_cgroups)."""
