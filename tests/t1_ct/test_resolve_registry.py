"""Pure-ish tests (tmp dirs, no root) of id resolution, the hook registry and the install-hook renderings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pylxcfs.errors import QuietError
from pylxcfs.toolkit import install, registry
from pylxcfs.toolkit.discovery import Candidate, parse_roots, scan_root
from pylxcfs.toolkit.resolve import resolve_id

FULL = "4f1c" + "0" * 60


def cands() -> list[Candidate]:
    return [Candidate(FULL, 10, None, "runc:/r", name="web"), Candidate("4f2", 11, None, "runc:/r"),
            Candidate("db", 12, None, "runc:/r", name="database"), Candidate("dup-a", 13, None, "r", name="twin"),
            Candidate("dup-b", 14, None, "r", name="twin")]


def test_exact_prefix_name() -> None:
    assert resolve_id("4f2", cands()).pid == 11  # exact beats being a prefix of nothing else
    assert resolve_id("4f1", cands()).pid == 10  # unique prefix of a full id
    assert resolve_id(FULL, cands()).pid == 10
    assert resolve_id("database", cands()).pid == 12
    assert resolve_id("web", cands()).pid == 10


@pytest.mark.parametrize(("q", "msg"), [("4f", "ambiguous"), ("dup", "ambiguous"), ("twin", "ambiguous"),
                                        ("zzz", "No such container"), ("../../etc", "No such container"),
                                        ("", "empty")])
def test_errors_list_candidates(q: str, msg: str) -> None:
    with pytest.raises(QuietError, match=msg) as ei:
        resolve_id(q, cands())
    assert ei.value.exit_code == 1
    if msg == "ambiguous" and q == "4f":
        assert FULL in str(ei.value) and "4f2" in str(ei.value)


def _rec(cid: str, pid: int | None, start: int | None = None, age: float = 0) -> registry.Record:
    return registry.Record(cid, pid, start, "/r", "/b", None, "/l", "createRuntime", time.time() - age)


def test_registry_roundtrip_and_prune(tmp_path: Path) -> None:
    d = str(tmp_path / "reg")
    registry.write(d, _rec("alive", os.getpid()))
    registry.write(d, _rec("gone", 2**22 + 12345))
    registry.write(d, _rec("young-nopid", None))
    registry.write(d, _rec("old-nopid", None, age=3600))
    assert oct(os.stat(d).st_mode & 0o777) == "0o700"
    (tmp_path / "reg" / "junk.json").write_text("{")
    (tmp_path / "reg" / "other.json").write_text(json.dumps({"id": "mismatch", "pid": 1}))
    recs = registry.load(d)
    assert sorted(r.id for r in recs) == ["alive", "gone", "old-nopid", "young-nopid"]
    live = registry.prune(d, recs)
    assert sorted(r.id for r in live) == ["alive", "young-nopid"]
    assert sorted(os.listdir(d)) == ["alive.json", "junk.json", "other.json", "young-nopid.json"]
    with pytest.raises(ValueError):
        registry.write(d, _rec("../../evil", 1))
    assert not (tmp_path / "evil.json").exists()
    assert registry.load(str(tmp_path / "missing")) == []


def test_scan_root_and_parse_roots(tmp_path: Path) -> None:
    assert parse_roots("runc:/a, crun:/b,/c") == [("runc", "/a"), ("crun", "/b"), ("runc", "/c")]
    root = tmp_path / "runc"
    (root / "me").mkdir(parents=True)
    (root / "me" / "state.json").write_text(json.dumps({"init_process_pid": os.getpid(),
                                                        "config": {"rootfs": "/rf"}}))
    (root / "dead").mkdir()
    (root / "dead" / "state.json").write_text(json.dumps({"init_process_pid": 2**22 + 999}))
    (root / "..bad").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "state.json").write_text("{")
    found = scan_root("runc", str(root))
    assert [(c.id, c.rootfs) for c in found] == [("me", "/rf")]
    croot = tmp_path / "crun"
    (croot / "c").mkdir(parents=True)
    (croot / "c" / "status").write_text(json.dumps({"pid": os.getpid(), "rootfs": "rootfs"}))
    assert [c.id for c in scan_root("crun", str(croot))] == ["c"]


def test_install_render() -> None:
    spec = install.render("isulad", "/usr/local/bin/lxcfs-hook", "/var/log/h.log", None)
    assert spec["prestart"][0]["args"] == ["lxcfs-hook", "--stage", "prestart", "--log", "/var/log/h.log"]
    h = install.render("hooksd", "/h", None, "/srv/lxcfs")
    assert h["hook"]["args"] == ["lxcfs-hook", "--stage", "createRuntime", "--lxcfs-dir", "/srv/lxcfs"]
    assert install.render("runc", "/h", None, None)["hooks"]["createRuntime"][0]["path"] == "/h"
    with pytest.raises(ValueError):
        install.render("docker", "/h", None, None)


def test_contrib_samples_match_install_hook() -> None:
    """contrib/hooks/* are exactly what install-hook renders for /usr/local/bin/lxcfs-hook."""
    contrib = Path(__file__).resolve().parents[2] / "contrib" / "hooks"
    for fmt, name in (("isulad", "isulad-hookspec.json"), ("hooksd", "hooks.d/pylxcfs.json"),
                      ("runc", "runc-config-snippet.json")):
        rendered = install.render(fmt, "/usr/local/bin/lxcfs-hook", install.DEFAULT_HOOK_LOG, None)
        assert json.loads((contrib / name).read_text()) == rendered, name
