"""Tier 2: DaemonConfig, the record a supervisor hands each worker (--config JSON): every setting survives the trip,
and a value a worker cannot use falls back to the default rather than breaking the worker."""

from __future__ import annotations

import json

import pytest

from pylxcfs.context import ViewOptions
from pylxcfs.fuse.config import DaemonConfig


def test_round_trip_keeps_every_setting() -> None:
    cfg = DaemonConfig(host_root="/x", opts=ViewOptions(enable_loadavg=True), debug=True, status_dir="/run/s",
                       spin_us=0)
    assert DaemonConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


@pytest.mark.parametrize("bad", [-1, 10_001, "50", None, 2.5])
def test_unusable_spin_falls_back_to_the_default(bad: object) -> None:
    d = DaemonConfig().to_json()
    d["spin_us"] = bad
    assert DaemonConfig.from_json(d).spin_us == DaemonConfig().spin_us == 50


def test_an_older_supervisor_without_spin_gives_the_default() -> None:
    d = DaemonConfig().to_json()
    del d["spin_us"]
    assert DaemonConfig.from_json(d).spin_us == 50
