"""Shared pytest setup: markers are declared in pyproject.toml; per-area fixtures live in each test
package's own conftest.py so that areas can evolve independently."""

from hypothesis import settings

# Property tests check results, never speed: on a loaded machine one example can take longer than hypothesis's
# default 200 ms deadline (seen: 580 ms under a load average of 13), which would fail a correct test.
settings.register_profile("pylxcfs", deadline=None)
settings.load_profile("pylxcfs")
