"""Pure parsers: text of one /proc or cgroupfs file -> plain data. No I/O, no policy (design.md §3.1)."""
