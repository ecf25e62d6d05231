# oa: the two commands of the README are `make run` and `make test`; both set up what is
# missing first (Debian packages, rustup targets). The kernel and busybox packages are fetched
# by `oa build` itself (apt-get download) into the cache (~/.cache/oa), outside the repository.

SHELL := /bin/bash
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl
OA := target/release/oa
PROFILE ?= tiny

# Debian packages the build and the tests use. QEMU is installed in an apt-get call of its own:
# with the machine's newer qemu-utils, installing it together with others fails ("generated
# breaks") while a call of its own replaces qemu-utils and works.
DEB_PACKAGES := squashfs-tools cpio
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEB_QEMU := qemu-system-x86

.PHONY: all deps build run test bench clean check-deps

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] || ! dpkg -s $(DEB_QEMU) >/dev/null 2>&1; then \
	  echo "==> installing missing Debian packages"; \
	  $(SUDO) apt-get update -q || exit 1; \
	  if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing || exit 1; fi; \
	  if ! dpkg -s $(DEB_QEMU) >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(DEB_QEMU) || exit 1; fi; \
	else \
	  fresh=$$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1); \
	  if [ -z "$$fresh" ]; then echo "==> apt-get update (package lists missing or older than a day; oa build downloads kernels with apt)"; $(SUDO) apt-get update -q || exit 1; fi; \
	fi
	@command -v qemu-system-x86_64 >/dev/null || { echo "error: qemu-system-x86_64 still missing after apt-get install $(DEB_QEMU)"; exit 1; }
	@command -v mksquashfs >/dev/null || { echo "error: mksquashfs missing after apt-get install squashfs-tools"; exit 1; }
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)

build: deps
	$(CARGO) build --release -p oa-init --target $(MUSL_TARGET)
	$(CARGO) build --release -p oa-builder

# Build the default profile and boot it: interactive on a terminal (Ctrl-A X quits),
# else until the ready line.
run: build
	$(OA) run $(PROFILE)

test: build
	$(CARGO) test --release --workspace -- --test-threads=2

bench: build
	$(CARGO) run --release -p oa-qemu-tests --bin oa-bench

clean:
	$(CARGO) clean
	rm -rf out
