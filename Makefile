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
DEB_PACKAGES := squashfs-tools cpio mtools syslinux syslinux-common systemd-boot-efi ovmf bmap-tools mmdebstrap pacman-package-manager makepkg arch-install-scripts libarchive-tools zstd openssh-client
# Persistence (issue 3): oa-storage links libcryptsetup and libbtrfsutil (bindgen needs clang);
# mkfs.btrfs goes into the initramfs; cryptsetup-bin is for the tests (the header opens with
# the standard tool).
DEB_PACKAGES += libcryptsetup-dev libbtrfsutil-dev clang pkg-config btrfs-progs cryptsetup-bin e2fsprogs
# Netboot (issue 5): iPXE boot files (undionly.kpxe, ipxe.efi), dnsmasq as the reference DHCP
# and TFTP server in the tests and the benchmark, ip(8) for the test network namespaces.
DEB_PACKAGES += ipxe dnsmasq iproute2 python3
# arm64 and the Raspberry Pi (issue 7): a cross linker for oa-init (aarch64 musl).
DEB_PACKAGES += gcc-aarch64-linux-gnu
# Hybrid ISO (issue 16): xorriso writes oa.iso; isolinux's isolinux.bin and isohdpfx.bin boot it
# under BIOS (ldlinux.c32 comes from syslinux-common).
DEB_PACKAGES += xorriso isolinux
# Secure Boot (issue 13): openssl makes keys (oa keys init), sbsigntool signs PE files (UKI);
# minisign checks the signed manifest.json in the tests, as users would.
DEB_PACKAGES += openssl sbsigntool minisign python3-venv
# arm64 secure netboot: the aarch64 binutils read and extend arm64 PE files (the UKI), AAVMF
# is the arm64 UEFI firmware the QEMU test boots with Secure Boot on.
DEB_PACKAGES += binutils-aarch64-linux-gnu qemu-efi-aarch64
# Secure netboot's test machines (issue 13) keep Microsoft's keys and get the operator's db
# certificate added offline by virt-fw-vars (virt-firmware, not packaged in Debian 12): from
# PyPI into a venv in the cache, outside the repository.
VENV := $(HOME)/.cache/oa/venv
VIRT_FIRMWARE := virt-firmware==26.10
AARCH64_TARGET := aarch64-unknown-linux-musl
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEB_QEMU := qemu-system-x86

# Benchmark peers (issue 14), installed by `make bench` only: Kea's DHCPv4 server and its load
# client perfdhcp (in kea-admin), nginx, dnsmasq (already a test dependency), wrk, atftp. Their
# services are not needed: the benchmark starts each peer itself on loopback / in a netns.
BENCH_PACKAGES := kea-dhcp4-server kea-admin nginx-light dnsmasq wrk atftp curl

.PHONY: all deps build run test check bench bench-deps fuzz install clean check-deps

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
	@# qemu-img (qcow2 outputs): installing qemu-system-x86 removes the machine's newer qemu-utils,
	@# so Debian's is installed afterwards, in a call of its own.
	@command -v qemu-img >/dev/null || { echo "==> installing qemu-utils (qemu-img)"; DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends qemu-utils || exit 1; }
	@command -v mksquashfs >/dev/null || { echo "error: mksquashfs missing after apt-get install squashfs-tools"; exit 1; }
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	@# arm64: Debian's arm64 kernel and busybox come from the arm64 architecture's package lists;
	@# QEMU for aarch64 and qemu-user (to list the arm64 busybox's applets) each in a call of their own.
	@dpkg --print-foreign-architectures | grep -qx arm64 || { echo "==> dpkg --add-architecture arm64"; $(SUDO) dpkg --add-architecture arm64 && $(SUDO) apt-get update -q || exit 1; }
	@for p in qemu-system-arm qemu-user-static; do dpkg -s $$p >/dev/null 2>&1 || { echo "==> installing $$p"; DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$p || exit 1; }; done
	@command -v qemu-system-aarch64 >/dev/null && command -v qemu-aarch64-static >/dev/null || { echo "error: qemu-system-aarch64 or qemu-aarch64-static missing after installing qemu-system-arm qemu-user-static"; exit 1; }
	@rustup target list --installed | grep -qx $(AARCH64_TARGET) || rustup target add $(AARCH64_TARGET)
	@[ -x $(VENV)/bin/virt-fw-vars ] || { echo "==> installing $(VIRT_FIRMWARE) (virt-fw-vars) into $(VENV)"; \
	  rm -rf $(VENV) && python3 -m venv $(VENV) && $(VENV)/bin/pip install -q $(VIRT_FIRMWARE) || { rm -rf $(VENV); exit 1; }; }

build: deps
	$(CARGO) build --release -p oa-init --target $(MUSL_TARGET)
	$(CARGO) build --release -p oa-init --target $(AARCH64_TARGET)
	@# The whole workspace in one call: oa, oa-storage, oa-pxe and the test tools share their
	@# dependencies with the same features as `cargo test --workspace`, so the tests reuse them.
	$(CARGO) build --release --workspace

# Build the default profile and boot it: interactive on a terminal (Ctrl-A X quits),
# else until the ready line.
run: build
	$(OA) run $(PROFILE)

# Formatting and lints are gates: `make test` runs this first, so CI enforces it. Clippy uses
# the release profile, so it shares the dependency builds of `make build` and `make test`.
# The last line keeps the builder/init contract in one place: no `"oa.` command-line literal
# outside contract/ (use oa_contract::cmdline).
check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	@if grep -rn --include='*.rs' '"oa\.' builder init pxe storage disk testkit qemu-tests; then \
	  echo 'error: "oa. literals outside contract/: use the oa_contract::cmdline constants'; exit 1; fi

test: build check
	$(CARGO) test --release --workspace -- --test-threads=2

bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing the benchmark peers:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing || \
	  { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; } || exit 1; \
	fi
	@for c in kea-dhcp4 perfdhcp nginx dnsmasq wrk atftp curl; do command -v $$c >/dev/null || [ -x /usr/sbin/$$c ] || { echo "error: $$c missing after installing $(BENCH_PACKAGES)"; exit 1; }; done

# OA_BENCH_ONLY=pxe (or pxe-dhcp, pxe-http, pxe-tftp) runs only oa-pxe against Kea, nginx and
# dnsmasq (testkit/src/bench); other values pick one of oa-bench's sets (qemu-tests/src/bin).
bench: build bench-deps
	@case "$(OA_BENCH_ONLY)" in pxe*) ;; *) $(CARGO) run --release -p oa-qemu-tests --bin oa-bench || exit 1;; esac
	@case "$(OA_BENCH_ONLY)" in ""|pxe*) $(CARGO) build --release -p oa-pxe -p oa-testkit --bins && target/release/oa-pxe-bench;; esac

# Install what `make build` made (run that first, as yourself; then `sudo make install`):
# oa, oa-pxe and oa-storage in BINDIR; oa-init as oa-init-x86_64 and oa-init-aarch64 beside
# oa, where `oa build` looks for it (builder/src/initbin.rs; oa-storage likewise,
# builder/src/elfdeps.rs); the man pages (oa(1), oa-SUBCOMMAND(1), oa-pxe(1)) and the bash,
# zsh and fish completions, generated from the clap definitions by the hidden `oa doc`.
# DESTDIR is prepended to every path (packaging).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
INSTALL ?= install

# Fuzz the oa-pxe parsers (pxe/fuzz, cargo-fuzz + libFuzzer): every target `cargo fuzz list`
# shows, FUZZ_SECONDS each. cargo-fuzz needs nightly flags (-Zsanitizer=address); no nightly
# toolchain can be fetched on the build machines, so the stable one runs them with
# RUSTC_BOOTSTRAP=1. Seeds are read from pxe/fuzz/corpus/<target> (kept in the repository);
# what libFuzzer finds goes to target/fuzz-corpus/<target>, crash inputs to
# pxe/fuzz/artifacts/<target>. Prints the executions and crashes per target, fails on any crash.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@cd pxe && targets=$$(RUSTC_BOOTSTRAP=1 $(CARGO) fuzz list) || exit 1; \
	[ -n "$$targets" ] || { echo "error: cargo fuzz list shows no targets in pxe/fuzz"; exit 1; }; \
	mkdir -p ../target/fuzz-corpus; sum=../target/fuzz-corpus/summary; : >$$sum; failed=""; \
	for t in $$targets; do \
	  mkdir -p ../target/fuzz-corpus/$$t fuzz/corpus/$$t; log=../target/fuzz-corpus/$$t.log; \
	  echo "==> fuzz $$t for $(FUZZ_SECONDS) s (log $${log#../})"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t ../target/fuzz-corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 >$$log 2>&1; rc=$$?; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | tail -1); \
	  if [ $$rc -eq 0 ]; then crashes=0; else crashes=1; failed="$$failed $$t"; tail -40 $$log; fi; \
	  printf '%-16s %12s executions  %s crash(es)\n' $$t "$${runs:-?}" $$crashes >>$$sum; \
	done; \
	echo; cat $$sum; \
	[ -z "$$failed" ] || { echo "error: crashed or failed to build:$$failed (logs in target/fuzz-corpus/, inputs in pxe/fuzz/artifacts/)"; exit 1; }

install:
	@for b in oa oa-pxe oa-storage; do test -x target/release/$$b || { echo "error: target/release/$$b is missing: run \`make build\` first"; exit 1; }; done
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR)/bash-completion/completions \
	  $(DESTDIR)$(DATADIR)/zsh/site-functions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	$(INSTALL) -m 755 target/release/oa target/release/oa-pxe target/release/oa-storage $(DESTDIR)$(BINDIR)/
	@for t in $(MUSL_TARGET):x86_64 $(AARCH64_TARGET):aarch64; do \
	  init=target/$${t%%:*}/release/oa-init; \
	  if [ -x $$init ]; then echo "$(INSTALL) -m 755 $$init $(DESTDIR)$(BINDIR)/oa-init-$${t##*:}"; $(INSTALL) -m 755 $$init $(DESTDIR)$(BINDIR)/oa-init-$${t##*:} || exit 1; \
	  else echo "note: $$init is missing: oa build for $${t##*:} will need --init PATH"; fi; \
	done
	$(OA) doc man $(DESTDIR)$(MANDIR)/man1
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; $(OA) doc completions $$tmp; \
	for c in oa oa-pxe; do \
	  $(INSTALL) -m 644 $$tmp/$$c.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/$$c; \
	  $(INSTALL) -m 644 $$tmp/_$$c $(DESTDIR)$(DATADIR)/zsh/site-functions/_$$c; \
	  $(INSTALL) -m 644 $$tmp/$$c.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/$$c.fish; \
	done; echo "completions: $(DESTDIR)$(DATADIR)/{bash-completion/completions,zsh/site-functions,fish/vendor_completions.d}"

clean:
	$(CARGO) clean
	rm -rf out
