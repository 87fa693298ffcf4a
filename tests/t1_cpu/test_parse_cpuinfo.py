"""parse/cpuinfo.py per architecture: one named test per layout quirk, plus a lossless round trip."""

from __future__ import annotations

import pytest

from pylxcfs.errors import ParseError
from pylxcfs.parse.cpuinfo import CpuBlock, CpuInfo, S390Header, detect_arch, parse_cpuinfo

from .conftest import CPUINFO

ARCH_FILES = {
    "x86_64.txt": "x86_64",
    "arm64.txt": "arm64",
    "arm64-compat32.txt": "arm64",
    "arm-legacy.txt": "arm64",  # 32-bit ARM: same CPU implementer/part keys, handled by the arm path
    "ppc64le.txt": "ppc64le",
    "s390x.txt": "s390x",
    "s390x-noblocks.txt": "s390x",
}


def load(name: str) -> str:
    return CPUINFO[name].read_text()


def unparse(info: CpuInfo) -> str:
    """Rebuild the text from the pieces (the test's own inverse, independent of the view)."""
    out = []
    for p in info.pieces:
        if isinstance(p, CpuBlock):
            out.append(p.text)
        elif isinstance(p, S390Header):
            lines = list(p.lines)
            if p.ids_index is not None:
                lines[p.ids_index] = "\n".join(f"processor {n}:{rest}" for n, rest in sorted(p.ids.items()))
            out.append("\n".join(lines))
        else:
            out.append(p)
    return "".join(out)


@pytest.mark.parametrize(("name", "arch"), sorted(ARCH_FILES.items()))
def test_arch_detected_from_content(name: str, arch: str) -> None:
    assert detect_arch(load(name)) == arch
    assert parse_cpuinfo(load(name)).arch == arch


@pytest.mark.parametrize("name", sorted(ARCH_FILES))
def test_roundtrip_is_lossless(name: str) -> None:
    text = load(name)
    assert unparse(parse_cpuinfo(text)) == text


@pytest.mark.parametrize("name", sorted(ARCH_FILES))
def test_block_number_is_at_recorded_offset(name: str) -> None:
    for b in parse_cpuinfo(load(name)).blocks:
        assert b.text[b.num_start:b.num_end] == str(b.cpu)


def test_x86_blocks_match_processor_lines() -> None:
    text = load("x86_64.txt")
    info = parse_cpuinfo(text)
    nums = [int(line.split(":")[1]) for line in text.splitlines() if line.startswith("processor")]
    assert list(info.cpus) == nums
    # each block starts at its processor line and owns its trailing blank line
    for b in info.blocks:
        assert b.text.startswith("processor\t: ") and b.text.endswith("power management:\n\n")


def test_arm64_has_no_model_name() -> None:
    info = parse_cpuinfo(load("arm64.txt"))
    assert info.cpus == (0, 1, 2, 3)
    assert all("model name" not in b.text and "CPU part\t: 0xd0c" in b.text for b in info.blocks)


def test_arm64_compat32_model_name_inside_blocks() -> None:
    info = parse_cpuinfo(load("arm64-compat32.txt"))
    assert info.cpus == (0, 1, 2, 3)
    assert all("model name\t: ARMv8 Processor rev 1 (v8l)" in b.text for b in info.blocks)


def test_arm_legacy_capital_processor_line_is_preamble() -> None:
    # "Processor : ARMv7 ..." carries no number: lxcfs's is_processor_line() rejects it too.
    info = parse_cpuinfo(load("arm-legacy.txt"))
    assert info.cpus == (0, 1)
    assert info.pieces[0] == "Processor\t: ARMv7 Processor rev 5 (v7l)\n"


def test_arm_legacy_hardware_trailer_outside_blocks() -> None:
    info = parse_cpuinfo(load("arm-legacy.txt"))
    tail = info.pieces[-1]
    assert isinstance(tail, str) and tail.startswith("Features") and "Hardware\t: sun8i" in tail
    assert all("Hardware" not in b.text for b in info.blocks)


def test_ppc64le_summary_trailer_outside_blocks() -> None:
    info = parse_cpuinfo(load("ppc64le.txt"))
    assert info.cpus == (0, 1, 2, 3)
    tail = info.pieces[-1]
    assert isinstance(tail, str)
    assert tail.splitlines()[0] == "timebase\t: 512000000" and tail.endswith("MMU\t\t: Radix\n")
    assert all("timebase" not in b.text for b in info.blocks)


def test_s390x_header_fields() -> None:
    info = parse_cpuinfo(load("s390x.txt"))
    head = info.pieces[0]
    assert isinstance(head, S390Header)
    assert head.count_index is not None and head.lines[head.count_index] == "# processors    : 4"
    assert head.count_prefix == "# processors    : "
    assert sorted(head.ids) == [0, 1, 2, 3]
    assert head.ids[2] == " version = FF,  identification = 0A18E8,  machine = 8561"
    assert any(line.startswith("facilities") for line in head.lines)
    assert any(line.startswith("cache5") for line in head.lines)


def test_s390x_blocks_own_preceding_blank_line() -> None:
    info = parse_cpuinfo(load("s390x.txt"))
    assert info.cpus == (0, 1, 2, 3)
    for b in info.blocks:
        assert b.text.startswith("\ncpu number      : ")
    assert info.blocks[-1].text.endswith("cpu MHz static  : 5200\n")


def test_s390x_without_cpu_number_blocks() -> None:
    info = parse_cpuinfo(load("s390x-noblocks.txt"))
    assert info.blocks == ()
    head = info.pieces[0]
    assert isinstance(head, S390Header) and sorted(head.ids) == [0, 1]


def test_duplicate_processor_raises() -> None:
    with pytest.raises(ParseError, match="duplicate"):
        parse_cpuinfo("processor\t: 0\na\t: 1\n\nprocessor\t: 0\na\t: 1\n\n")


def test_s390x_duplicate_id_line_raises() -> None:
    text = "vendor_id       : IBM/S390\nprocessor 0: version = FF\nprocessor 0: version = FF\n"
    with pytest.raises(ParseError, match="duplicate"):
        parse_cpuinfo(text)


def test_s390x_non_contiguous_id_lines_raise() -> None:
    text = "vendor_id       : IBM/S390\nprocessor 0: version = FF\nfoo : 1\nprocessor 1: version = FF\n"
    with pytest.raises(ParseError, match="contiguous"):
        parse_cpuinfo(text)


def test_no_blocks_unknown_text_kept() -> None:
    info = parse_cpuinfo("something else\n")
    assert info.arch == "unknown" and info.blocks == () and info.pieces == ("something else\n",)
