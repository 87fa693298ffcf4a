# Two commands matter: `make run` (install, then serve at the default mount point) and
# `make test` (install, then every test). Both start from a clean clone as root.
SHELL := /bin/bash
# Debian's /usr/bin/python3 is built with PGO and LTO and pyenv's 3.11 is not: on Debian's the pinned benchmark
# was 5-25% faster on 10 of 11 files (bench/RESULTS.md, the interpreter A/B). Any python3 >= 3.11 works: `make PY=python3`.
PY ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VENV := .venv
VPY := $(VENV)/bin/python
MOUNTPOINT ?= /var/lib/lxc/lxcfs
RUN_ARGS ?=
PYTEST_ARGS ?=

# Debian packages: fuse3 (libfuse3 + fusermount3) and python3-venv are what the daemon needs; the rest is for tests:
# real containers (runc, crun, busybox-static), real clients (procps, util-linux, sysstat),
# the C lxcfs for side-by-side checks, and QEMU for the pure cgroup-v2 guest.
APT_RUN := fuse3 python3-venv
APT_TEST := lxcfs busybox-static runc crun procps util-linux sysstat psmisc gcc jq strace \
	qemu-system-x86 cpio xz-utils zstd podman docker.io containerd uidmap fuse-overlayfs slirp4netns \
	mmdebstrap
# `make deb`: the package is a venv made with Debian's python3 (python3-venv), packed by dpkg-deb;
# `make deb-test` checks it in a clean Debian 12 root made by mmdebstrap (cached in build/deb-root).
APT_DEB := python3-venv mmdebstrap
STAMP := $(VENV)/.installed

.PHONY: install install-run apt-run apt-test run test lint unit bench bench-quick demo clean deb deb-test

apt-run:
	@bash tools/apt-ensure.sh $(APT_RUN)

apt-test:
	@bash tools/apt-ensure.sh $(APT_RUN) $(APT_TEST)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install-run: apt-run $(STAMP)

install: apt-test $(STAMP)

run: install-run
	$(VENV)/bin/pylxcfs --foreground $(RUN_ARGS) $(MOUNTPOINT)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy

test: install lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# As root (CI) `make unit` also runs the root and fuse tiers; as any other user it runs what needs no root (tier t1
# and the unmarked t2 tests): the root/fuse tests are deselected by marker, never skipped and counted as passes.
UNIT_MARKS := not e2e and not v2guest$(if $(filter 0,$(shell id -u)),, and not root and not fuse)

unit: $(STAMP)
	$(VENV)/bin/pytest -m "$(UNIT_MARKS)" $(PYTEST_ARGS)

demo: install
	bash tools/demo.sh

bench: install
	$(VPY) -m bench.run $(BENCH_ARGS)

bench-quick: install
	$(VPY) -m bench.run --quick $(BENCH_ARGS)

deb:
	@bash tools/apt-ensure.sh $(APT_DEB)
	bash packaging/deb/build.sh build/deb

deb-test: deb
	bash packaging/deb/test-in-root.sh build/deb/pylxcfs_$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' src/pylxcfs/__init__.py)-1_all.deb

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
