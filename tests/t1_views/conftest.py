"""Shared helpers for the render-core view tests: fixture host roots and golden files.

Golden files live in tests/golden/<host>/<view>.txt and are rewritten ONLY when PYLXCFS_UPDATE_GOLDEN=1 is set
(then review the diff like code). Expected numbers are also asserted independently in test_views_expected.py.
"""

from __future__ import annotations

import os
from pathlib import Path

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("PYLXCFS_UPDATE_GOLDEN") == "1"


def check_golden(host: str, name: str, actual: str) -> None:
    """Compare with tests/golden/<host>/<name>.txt (or rewrite it under PYLXCFS_UPDATE_GOLDEN=1)."""
    path = GOLDEN / host / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"missing golden {path}; generate with PYLXCFS_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text()
