"""parse/mountinfo.py and parse/keyvalue.py."""

from __future__ import annotations

import pytest

from pylxcfs.errors import ParseError
from pylxcfs.parse.keyvalue import parse_flat_keyed, parse_int, parse_limit, parse_nested_keyed
from pylxcfs.parse.mountinfo import parse_mountinfo

MI = (
    "29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpuacct,cpu\n"
    "35 23 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    "40 23 0:31 /sub /mnt/with\\040space rw master:1 - ext4 /dev/sda1 rw\n"
)


def test_mountinfo_fields() -> None:
    m = parse_mountinfo(MI)
    assert m[0].mount_point == "/sys/fs/cgroup/cpu,cpuacct"
    assert m[0].fstype == "cgroup" and m[0].super_options == ("rw", "cpuacct", "cpu")
    assert m[1].fstype == "cgroup2" and m[1].root == "/"


def test_mountinfo_octal_escape_and_optional_fields() -> None:
    m = parse_mountinfo(MI)[2]
    assert m.mount_point == "/mnt/with space"
    assert m.root == "/sub" and m.source == "/dev/sda1"


def test_mountinfo_live_has_proc() -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = parse_mountinfo(f.read())
    assert any(m.fstype == "proc" and m.mount_point == "/proc" for m in mounts)


def test_mountinfo_malformed() -> None:
    with pytest.raises(ParseError):
        parse_mountinfo("1 2 3\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max\n", None),
        ("9223372036854771712\n", None),  # v1 unlimited, 4 KiB pages
        ("9223372036854710272\n", None),  # v1 unlimited, 64 KiB pages
        ("536870912\n", 536870912),
        ("0\n", 0),
    ],
)
def test_parse_limit(text: str, expected: int | None) -> None:
    assert parse_limit(text) == expected


def test_parse_limit_bad() -> None:
    with pytest.raises(ParseError):
        parse_limit("lots\n")


def test_parse_int() -> None:
    assert parse_int(" 42\n") == 42
    with pytest.raises(ParseError):
        parse_int("")


def test_flat_keyed() -> None:
    assert parse_flat_keyed("usage_usec 10\nuser_usec 7\n\n") == {"usage_usec": 10, "user_usec": 7}
    with pytest.raises(ParseError):
        parse_flat_keyed("usage_usec ten\n")
    with pytest.raises(ParseError):
        parse_flat_keyed("lonely\n")


def test_nested_keyed() -> None:
    out = parse_nested_keyed("8:0 rbytes=1 wbytes=2 rios=3\n253:1 rbps=max\n")
    assert out == {"8:0": {"rbytes": 1, "wbytes": 2, "rios": 3}, "253:1": {"rbps": -1}}
    with pytest.raises(ParseError):
        parse_nested_keyed("8:0 rbytes\n")
