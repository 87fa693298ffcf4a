"""Shared helpers for the render-core view tests: the fixture hosts and goldens of tests/support/hosts.py.

Golden files live in tests/golden/<host>/<view>.txt and are rewritten ONLY when PYLXCFS_UPDATE_GOLDEN=1 is set
(then review the diff like code). Expected numbers are also asserted independently in test_views_expected.py.
"""

from __future__ import annotations

from support.hosts import GOLDEN, HOSTS, UPDATE, check_golden

__all__ = ["GOLDEN", "HOSTS", "UPDATE", "check_golden"]
