"""Tier 2: fuse/board.py across a real fork: a worker's count of kept partial renders is seen by its siblings,
an unknown salt is None (its handles' reads must go to their owner), and slots past SLOTS are not used."""

from __future__ import annotations

import os

from pylxcfs.fuse import board
from pylxcfs.fuse.board import Board


def test_counts_cross_a_fork_and_unknown_salts_are_none() -> None:
    page = board.new_page()
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a sibling worker (slot 1): keeps 3 partial renders, then none
        try:
            os.close(r)
            me = Board(page, 1, 0xBEEF)
            me.publish(3)
            os.write(w, b"3")
            os.read(go_r, 1)  # until the parent has looked
            me.publish(0)
            os.write(w, b"0")
        finally:
            os._exit(0)
    os.close(w)
    mine = Board(page, 0, 0xCAFE)
    assert os.read(r, 1) == b"3" and mine.kept_by(0xBEEF) == 3
    os.write(go_w, b"x")
    assert os.read(r, 1) == b"0" and mine.kept_by(0xBEEF) == 0
    os.waitpid(pid, 0)
    assert mine.kept_by(0xCAFE) == 0 and mine.kept_by(0x1234) is None
    outside = Board(page, board.SLOTS, 0x9999)  # past the last slot: never on the board
    outside.publish(5)
    assert mine.kept_by(0x9999) is None and mine.kept_by(0xBEEF) == 0
