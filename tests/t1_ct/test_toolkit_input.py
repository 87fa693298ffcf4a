"""Pure parts of the toolkit's input handling: who `--all` selects, probe verdicts, names from podman's storage, and
the safe readers (regular files only, bounded, deep JSON refused). No root, no mounts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pylxcfs.toolkit import discovery, ops, probe, safefile
from pylxcfs.toolkit.discovery import Candidate


def test_all_never_selects_a_namespace_only_the_proc_scan_found() -> None:
    me = os.getpid()
    scan = Candidate("pid-77", me, None, "procscan")
    engine = Candidate("ct1", me + 1, None, "runc:/run/runc", engine=True)
    reg = Candidate("ct2", me + 2, None, "registry", registered=True, lxcfs_dir="/l")
    other_dir = Candidate("ct3", me + 3, None, "registry", registered=True, lxcfs_dir="/other")
    picked = ops.select_for_all([scan, engine, reg, other_dir], include_unconfigured=True, lxcfs_dir="/l")
    assert [c.id for c in picked] == ["ct1", "ct2"]
    # Without --include-unconfigured an engine container needs lxcfs overlays (our own process has none).
    engine_self = Candidate("ct4", me, None, "runc:/r", engine=True)
    assert [c.id for c in ops.select_for_all([scan, engine_self, reg], False, "/l")] == ["ct2"]


@pytest.mark.parametrize(("ok", "data", "health"), [
    (True, {"state": "serving", "detail": "read proc/meminfo"}, probe.Health.SERVING),
    (True, {"state": "dead", "detail": "ENOTCONN"}, probe.Health.DEAD),
    (True, {"state": "error", "detail": "[Errno 5] Input/output error"}, probe.Health.ERROR),
    (False, {}, probe.Health.ERROR),  # the worker died without an answer: proves nothing about the daemon
])
def test_probe_only_enotconn_is_dead(ok: bool, data: dict[str, str], health: probe.Health) -> None:
    r = probe.classify(ok, data, "worker died without a result (signal 9)", "fuse.lxcfs at /l", 0.1)
    assert r.health == health, r
    assert int(probe.Health.ERROR) == 6


def test_podman_names_come_from_containers_storage(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp_path}/g"\nrunroot = "{tmp_path}/r"\n')
    (tmp_path / "g" / "overlay-containers").mkdir(parents=True)
    (tmp_path / "g" / "overlay-containers" / "containers.json").write_text(json.dumps([
        {"id": "a" * 64, "names": ["web"], "image": "x"}, {"id": "b" * 64, "names": []}, {"names": ["noid"]}]))
    assert discovery.podman_names(str(conf)) == {"a" * 64: "web"}
    conf.write_text('[storage]\ndriver = "../etc"\n')
    assert discovery.podman_names(str(conf)) == {}


def test_read_regular_refuses_fifo_and_directory_quickly(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(safefile.UnsafeFileError, match="is a FIFO"):
        safefile.read_regular(str(fifo), 1 << 20, 2.0)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(safefile.UnsafeFileError, match="is a directory"):
        safefile.read_regular(str(tmp_path), 1 << 20, 2.0)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    with pytest.raises(safefile.UnsafeFileError, match="larger than 10 bytes"):
        safefile.read_regular(str(big), 10)


def test_deep_json_is_a_clear_error() -> None:
    with pytest.raises(safefile.UnsafeFileError, match="nested too deeply"):
        safefile.loads_json("[" * 100_000 + "]" * 100_000, "state.json")
