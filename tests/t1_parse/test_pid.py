"""parse/pid.py: /proc/<pid>/status, stat and cgroup, one test per quirk."""

from __future__ import annotations

import os

import pytest

from pylxcfs.errors import ParseError
from pylxcfs.parse.pid import parse_cgroup, parse_stat_starttime, parse_stat_state, parse_status

STATUS = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t4200\n" \
         "TracerPid:\t0\nNStgid:\t4242\t1\nNSpid:\t4242\t1\nNSpgid:\t4242\t1\n"


def test_status_nspid_and_ppid() -> None:
    st = parse_status(STATUS)
    assert st.ppid == 4200
    assert st.nspid == (4242, 1)


def test_status_single_level_nspid_is_host() -> None:
    assert parse_status("PPid:\t1\nNSpid:\t77\n").nspid == (77,)


def test_status_without_nspid_is_an_error() -> None:
    # kernels before 4.1 have no NSpid: we cannot resolve, and say so
    with pytest.raises(ParseError, match="NSpid"):
        parse_status("Name:\tsh\nPPid:\t1\n")


def test_status_bad_ppid() -> None:
    with pytest.raises(ParseError):
        parse_status("PPid:\tx\nNSpid:\t1\n")


def test_status_of_live_process_matches_os() -> None:
    with open(f"/proc/{os.getpid()}/status") as f:
        st = parse_status(f.read())
    assert st.ppid == os.getppid()
    assert st.nspid[0] == os.getpid()


def test_stat_starttime_comm_with_spaces_and_parens() -> None:
    # comm may contain ") (": the LAST ')' ends it (proc(5))
    line = "123 (a) (b c) S 1 123 123 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 98765 2797568 440 0 0\n"
    assert parse_stat_starttime(line) == 98765
    assert parse_stat_state(line) == "S"


def test_stat_truncated() -> None:
    with pytest.raises(ParseError):
        parse_stat_starttime("1 (x) S 0 1")
    with pytest.raises(ParseError):
        parse_stat_starttime("garbage without comm")


def test_stat_starttime_live_increases_for_a_child() -> None:
    with open("/proc/1/stat") as f:
        init_start = parse_stat_starttime(f.read())
    with open(f"/proc/{os.getpid()}/stat") as f:
        me = parse_stat_starttime(f.read())
    assert me >= init_start


def test_cgroup_v1_v2_lines() -> None:
    lines = parse_cgroup("12:cpu,cpuacct:/docker/ab\n1:name=systemd:/x\n0::/user.slice\n")
    assert lines[0].hierarchy_id == 12 and lines[0].controllers == ("cpu", "cpuacct")
    assert lines[0].path == "/docker/ab"
    assert lines[1].controllers == ("name=systemd",)
    assert lines[2].hierarchy_id == 0 and lines[2].controllers == () and lines[2].path == "/user.slice"


def test_cgroup_path_with_colon_kept() -> None:
    assert parse_cgroup("0::/a:b\n")[0].path == "/a:b"


def test_cgroup_malformed() -> None:
    with pytest.raises(ParseError):
        parse_cgroup("nonsense\n")
    with pytest.raises(ParseError):
        parse_cgroup("x:memory:/\n")
