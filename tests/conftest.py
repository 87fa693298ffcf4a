"""Shared pytest setup: markers are declared in pyproject.toml; per-area fixtures live in each test
package's own conftest.py so that areas can evolve independently."""
