"""Pure tests of the hook's input parsing (ct/oci.py): every engine's state dialect, rootfs resolution order,
bad input, and the container-id rule that keeps ids from ever becoming paths."""

from __future__ import annotations

import json

import pytest

from pylxcfs.ct.oci import (
    HookInputError,
    OciConfig,
    container_name,
    parse_config,
    parse_state,
    resolve_rootfs,
    valid_container_id,
)

RUNC = {"ociVersion": "1.0.2-dev", "id": "c1", "status": "creating", "pid": 4242, "bundle": "/b/c1"}
CRUN = {"ociVersion": "1.0", "id": "c1", "pid": 4242, "root": "rootfs", "bundle": "/b/c1", "status": "created"}
ISULAD = {"ociVersion": "1.0.0", "id": "c1", "pid": 4242, "root": "/var/lib/isulad/engines/lcr/c1/rootfs",
          "bundlePath": "/var/lib/isulad/engines/lcr/c1"}


def test_runc_state_uses_config_root_path() -> None:
    st = parse_state(json.dumps(RUNC))
    assert (st.id, st.pid, st.bundle, st.root, st.status) == ("c1", 4242, "/b/c1", None, "creating")
    assert resolve_rootfs(st, OciConfig("rootfs")) == "/b/c1/rootfs"
    assert resolve_rootfs(st, OciConfig("/abs/rootfs/")) == "/abs/rootfs"
    with pytest.raises(HookInputError, match="cannot find the rootfs"):
        resolve_rootfs(st, None)


def test_crun_relative_root_and_isulad_absolute_root() -> None:
    assert resolve_rootfs(parse_state(json.dumps(CRUN)), None) == "/b/c1/rootfs"
    st = parse_state(json.dumps(ISULAD))
    assert st.bundle == "/var/lib/isulad/engines/lcr/c1"  # legacy bundlePath
    # An absolute root wins over config.json (iSulad/lcr hand the real, mounted rootfs).
    assert resolve_rootfs(st, OciConfig("rootfs")) == "/var/lib/isulad/engines/lcr/c1/rootfs"


def test_in_container_pids_are_kept() -> None:
    assert parse_state(json.dumps({**RUNC, "pid": 1})).pid == 1
    assert parse_state(json.dumps({**CRUN, "pid": 0})).pid == 0
    assert parse_state(json.dumps({"id": "x"})).pid is None


@pytest.mark.parametrize(("text", "msg"), [
    ("", "empty"), ("   \n", "empty"), ("{", "not valid JSON"), ("[]", "not a JSON object"), ("null", "not a JSON"),
    ('{"id": ""}', "no container id"), ('{"id": 5}', "no container id"), ('{"id": "x", "pid": -1}', "bad pid"),
    ('{"id": "x", "pid": true}', "bad pid"), ('{"id": "x", "pid": "7"}', "bad pid"),
])
def test_bad_state(text: str, msg: str) -> None:
    with pytest.raises(HookInputError, match=msg):
        parse_state(text)


def test_relative_bundle_is_refused() -> None:
    st = parse_state(json.dumps({**RUNC, "bundle": "b/c1"}))
    with pytest.raises(HookInputError, match="not absolute"):
        resolve_rootfs(st, OciConfig("rootfs"))


def test_config_and_names() -> None:
    cfg = parse_config(json.dumps({"root": {"path": "rootfs"}, "annotations": {"io.lxcfs.name": "web", "n": 3}}))
    assert cfg.root_path == "rootfs" and cfg.annotations == {"io.lxcfs.name": "web", "n": "3"}
    assert container_name(cfg.annotations) == "web"
    assert container_name({"io.kubernetes.cri.container-name": "k"}) == "k"
    assert container_name({}) is None
    assert parse_config("{}").root_path is None
    with pytest.raises(HookInputError):
        parse_config("nope")


@pytest.mark.parametrize("cid", ["c1", "a" * 64, "my_ct.v2+x-1", "0"])
def test_valid_ids(cid: str) -> None:
    assert valid_container_id(cid)


@pytest.mark.parametrize("cid", ["", ".", "..", "../../etc", "a/b", "/abs", "-rf", "x\x00y", "a b", "é", "a" * 300,
                                 "x\n"])
def test_hostile_ids(cid: str) -> None:
    assert not valid_container_id(cid)
