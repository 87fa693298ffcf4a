"""parse/meminfo.py: order and bytes of host lines survive a rewrite; values parse per key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pylxcfs.parse.meminfo import parse_meminfo

HOST = "MemTotal:       24684092 kB\nMemFree:        23308884 kB\nHugePages_Total:       0\n" \
       "VmallocTotal:   34359738367 kB\nNewKernelKey:       7 kB\n"


def test_keys_and_values() -> None:
    m = parse_meminfo(HOST)
    assert m.keys == ("MemTotal", "MemFree", "HugePages_Total", "VmallocTotal", "NewKernelKey")
    assert m.value_kib("MemTotal") == 24684092
    assert m.value_kib("HugePages_Total") == 0
    assert m.value_kib("Absent") is None


def test_rewrite_uses_kernel_layout() -> None:
    out = parse_meminfo(HOST).rewrite({"MemFree": 1, "MemTotal": 524288, "VmallocTotal": 123456789012})
    lines = out.splitlines()
    # fs/proc/meminfo.c: "%-16s" name incl. colon, value right-aligned in 8 columns, " kB"
    assert lines[0] == "MemTotal:         524288 kB"
    assert lines[1] == "MemFree:               1 kB"
    assert lines[3] == "VmallocTotal:   123456789012 kB"  # wider than 8: widens, like the kernel
    assert lines[2] == "HugePages_Total:       0"  # untouched, byte for byte
    assert lines[4] == "NewKernelKey:       7 kB"
    assert out.endswith(" kB\n")


def test_rewrite_does_not_add_absent_keys() -> None:
    out = parse_meminfo(HOST).rewrite({"MemAvailable": 5})
    assert "MemAvailable" not in out
    assert out == HOST


def test_live_meminfo_roundtrip() -> None:
    with open("/proc/meminfo") as f:
        text = f.read()
    m = parse_meminfo(text)
    assert m.rewrite({}) == text
    assert m.value_kib("MemTotal") == int(text.split()[1])


_key = st.from_regex(r"[A-Z][A-Za-z_()]{1,14}", fullmatch=True)


@given(st.lists(st.tuples(_key, st.integers(0, 10**12)), min_size=1, max_size=40, unique_by=lambda t: t[0]),
       st.data())
def test_rewrite_preserves_every_key_in_order(pairs: list[tuple[str, int]], data: st.DataObject) -> None:
    text = "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in pairs)
    m = parse_meminfo(text)
    chosen = data.draw(st.lists(st.sampled_from([k for k, _ in pairs]), unique=True))
    out = m.rewrite({k: 1 for k in chosen})
    assert [ln.partition(":")[0] for ln in out.splitlines()] == [k for k, _ in pairs]
    for (k, _), before, after in zip(pairs, text.splitlines(), out.splitlines(), strict=True):
        if k not in chosen:
            assert before == after
        else:
            assert after.split()[1] == "1"
