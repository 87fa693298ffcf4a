"""Tier 3: the fixture tree the daemon tests serve (support.fusedaemon.make_fixture_root) can be prepared again
while a daemon reads from it, as the adoption tests do for their second daemon, without a reader ever seeing a
partial file. It once truncated and rewrote meminfo there, and a read rendered in between came back empty: the
one-in-ten "empty read" of test_supervisor_sigkill_workers_serve_and_a_new_supervisor_adopts under load."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.fusedaemon import MEMINFO, ReaderLoop, make_fixture_root, start_daemon, wait_for

pytestmark = [pytest.mark.root, pytest.mark.fuse]


def test_preparing_the_tree_again_while_served_never_shows_a_partial_file(tmp_path: Path) -> None:
    root = make_fixture_root(tmp_path)
    d = start_daemon(tmp_path, "--workers", "1", "--host-root", str(root))
    reader = ReaderLoop(d.mnt / "proc/meminfo", tmp_path / "reads.jsonl", interval=0)
    try:
        wait_for(lambda: reader.count() >= 5, 15, "reader warm-up")
        n = reader.count()
        calls = 0
        deadline = time.monotonic() + 30
        # At least 100 reads land while the tree is prepared over and over (the old helper made ~10% of them
        # empty here, so it could not pass this).
        while reader.count() < n + 100 and time.monotonic() < deadline:
            assert make_fixture_root(tmp_path) == root
            calls += 1
        assert reader.count() >= n + 100, "too few reads during the rewrites"
    finally:
        res = reader.stop()
        d.stop()
    assert res.errors == [], res.errors[:3]
    bad = [r for r in res.records if r["data"] != MEMINFO]
    assert bad == [], (len(bad), calls, bad[:2])
    assert (root / "proc/meminfo").read_text() == MEMINFO


def test_a_changed_or_missing_file_is_put_back(tmp_path: Path) -> None:
    """Preparing again still repairs the tree: a file with other content, or one that is gone."""
    root = make_fixture_root(tmp_path)
    (root / "proc/meminfo").write_text("MemTotal: 1 kB\n")
    (root / "proc/uptime").unlink()
    assert make_fixture_root(tmp_path) == root
    assert (root / "proc/meminfo").read_text() == MEMINFO
    assert (root / "proc/uptime").read_text() == "12345.67 23456.78\n"
    assert not list(root.rglob(".*.new"))
