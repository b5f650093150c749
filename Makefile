# probattn: build, test, run and install.
#
#   make run      install what is missing, build in release, start the daemon on loopback with Config/probattnd.yaml
#   make test     install what is missing (with Chromium for the web annotator's browser test), build, run the
#                 whole test suite
#   make install  install binaries, plugins, default config and the systemd unit under PREFIX (default /usr)
#   make fuzz     build the libFuzzer targets (Fuzz/) with -sanitize=fuzzer,address and run each for SECONDS s

SWIFT       ?= swift
PREFIX      ?= /usr
DESTDIR     ?=
CONFIG      ?= Config/probattnd.yaml
BUILD_FLAGS ?=
# Installed layout (make install): binaries in $(PREFIX)/bin; plugins in $(PREFIX)/lib/probattn/plugins; the Swift
# runtime libraries the binaries need in $(PREFIX)/lib/probattn (found through the binaries' rpath, so nothing depends
# on the toolchain being installed); the config in /etc/probattn (systemd's ConfigurationDirectory=probattn); the unit
# in $(UNITDIR).
BINDIR      := $(PREFIX)/bin
LIBDIR      := $(PREFIX)/lib/probattn
PLUGINDIR   := $(LIBDIR)/plugins
CONFDIR     := /etc/probattn
DOCDIR      := $(PREFIX)/share/doc/probattn
# The web annotator's files (Web/), found there by the daemon through $(PREFIX)/bin/../share/probattn/web.
WEBDIR      := $(PREFIX)/share/probattn/web
UNITDIR     ?= $(PREFIX)/lib/systemd/system
# Release builds carry an rpath to the installed runtime folder: $ORIGIN/../lib/probattn for the binaries in bin/,
# $ORIGIN/.. for the plugins in lib/probattn/plugins. Never --static-swift-stdlib: plugins are Swift shared objects
# and need the one shared Swift runtime of the process.
RELEASE_FLAGS := -c release -Xlinker -rpath -Xlinker '$$ORIGIN/../lib/probattn' -Xlinker -rpath -Xlinker '$$ORIGIN/..'
# Debian packages the build and tests need (headers through pkg-config; python3-pip for the protocol example test;
# python3-venv for the Label Studio integration test, which installs Label Studio into .build/label-studio-1.23; time
# (GNU time) for the tests that measure a child's peak memory).
APT_PACKAGES := pkg-config libzmq3-dev libopenblas-dev libsqlite3-dev libpng-dev libjpeg62-turbo-dev python3 python3-pip python3-venv time
# Debian's Chromium and its WebDriver for the web annotator's browser test (make test only).
BROWSER_PACKAGES := chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

# Fuzzing: one libFuzzer executable per untrusted-input entry point (Package.swift's fuzzTargets), built in their own
# scratch folder (the sanitizers instrument every module they link). swiftc keeps only the last -sanitize= flag, and
# SwiftPM passes `--sanitize fuzzer --sanitize address` as two, which leaves the Swift code without coverage counters
# (libFuzzer would see only the C parts): the trailing -Xswiftc -sanitize=fuzzer,address restores both. Each run starts from the committed seeds in
# Fuzz/corpus/<name> and keeps what it finds in .build-fuzz/corpus/<name>; a crash leaves its input in
# .build-fuzz/artifacts and fails the target.
FUZZ_TARGETS := request config image rle
SECONDS     ?= 60
# Stop a target earlier once it has run this many inputs (-1: no limit).
RUNS        ?= -1
FUZZ_BUILD  := -c release --scratch-path .build-fuzz --sanitize fuzzer --sanitize address \
               -Xswiftc -sanitize=fuzzer,address -Xswiftc -DPROBATTN_FUZZING

.PHONY: deps browserdeps pydeps build release test run install uninstall clean fuzz fuzz-build

## deps: apt-get install the packages above, only those that are missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "System packages present."; fi

## browserdeps: apt-get install Chromium and chromium-driver, only when missing.
browserdeps: deps
	@missing=""; for p in $(BROWSER_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "Browser packages present."; fi

## pydeps: pyzmq for the protocol example's test (docs/examples/client.py), prometheus_client, whose text-format
## parser reads GET /metrics in the HTTP gateway's tests, and selenium for the web annotator's browser test
## (Tests/Browser; it is given /usr/bin/chromedriver, so it never fetches a driver); each only when missing. Debian's pip refuses system-wide
## installs (PEP 668) unless told otherwise, hence the second attempt.
pydeps: deps
	@python3 -c 'import zmq' 2>/dev/null && echo "pyzmq present." || \
	  python3 -m pip install --quiet pyzmq || python3 -m pip install --quiet --break-system-packages pyzmq
	@python3 -c 'import prometheus_client' 2>/dev/null && echo "prometheus_client present." || \
	  python3 -m pip install --quiet prometheus_client || \
	  python3 -m pip install --quiet --break-system-packages prometheus_client
	@python3 -c 'import selenium' 2>/dev/null && echo "selenium present." || \
	  python3 -m pip install --quiet selenium || python3 -m pip install --quiet --break-system-packages selenium

build: deps
	$(SWIFT) build $(BUILD_FLAGS)

release: deps
	$(SWIFT) build $(RELEASE_FLAGS) $(BUILD_FLAGS)

test: deps browserdeps pydeps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(SWIFT) test --skip-build $(BUILD_FLAGS)

## run: the release daemon in the foreground (Ctrl-C stops it gracefully): requests on tcp://127.0.0.1:5555,
## results on tcp://127.0.0.1:5556, HTTP and the web annotator on http://127.0.0.1:5580/, the SQLite store in
## ./state, plugins from the build products (next to the binary), the page's files from Web/.
run: release
	mkdir -p state
	exec "$$($(SWIFT) build $(RELEASE_FLAGS) $(BUILD_FLAGS) --show-bin-path)/probattnd" run --config $(CONFIG)

## install: release build, then copy binaries, plugins, the Swift runtime they link, the default config (pointing
## plugin_dir at $(PLUGINDIR); an existing config is kept) and the unit (paths rewritten for PREFIX) under DESTDIR.
install: release
	@set -e; bin="$$($(SWIFT) build $(RELEASE_FLAGS) $(BUILD_FLAGS) --show-bin-path)"; \
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(PLUGINDIR)" "$(DESTDIR)$(CONFDIR)" "$(DESTDIR)$(UNITDIR)" \
	  "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(WEBDIR)"; \
	install -m 0755 "$$bin/probattnd" "$$bin/probattn" "$(DESTDIR)$(BINDIR)/"; \
	install -m 0644 "$$bin"/libprobattn-*.so "$(DESTDIR)$(PLUGINDIR)/"; \
	runtime="$$(dirname "$$(dirname "$$(readlink -f "$$(command -v $(SWIFT))")")")/lib/swift/linux"; \
	libs="$$(ldd "$$bin/probattnd" "$$bin/probattn" "$$bin"/libprobattn-*.so | awk '$$2 == "=>" {print $$1}' | sort -u)"; \
	for lib in $$libs; do \
	  if [ -e "$$runtime/$$lib" ]; then install -m 0644 "$$runtime/$$lib" "$(DESTDIR)$(LIBDIR)/"; fi; \
	done; \
	sed 's|^# plugin_dir: .*|plugin_dir: $(PLUGINDIR)|' $(CONFIG) > "$(DESTDIR)$(CONFDIR)/probattnd.yaml.dist"; \
	if [ -e "$(DESTDIR)$(CONFDIR)/probattnd.yaml" ]; then \
	  echo "Kept the existing $(CONFDIR)/probattnd.yaml; the new default is $(CONFDIR)/probattnd.yaml.dist"; \
	else mv "$(DESTDIR)$(CONFDIR)/probattnd.yaml.dist" "$(DESTDIR)$(CONFDIR)/probattnd.yaml"; fi; \
	chmod 0644 "$(DESTDIR)$(CONFDIR)"/probattnd.yaml*; \
	sed -e 's|/usr/bin/probattnd|$(BINDIR)/probattnd|g' -e 's|/usr/share/doc/probattn|$(DOCDIR)|g' \
	  systemd/probattnd.service > "$(DESTDIR)$(UNITDIR)/probattnd.service"; \
	chmod 0644 "$(DESTDIR)$(UNITDIR)/probattnd.service"; \
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"; \
	install -m 0644 Web/index.html Web/app.css Web/app.js Web/rle.js "$(DESTDIR)$(WEBDIR)/"; \
	echo "Installed under $(DESTDIR)$(PREFIX): bin/probattnd, bin/probattn, $(PLUGINDIR), $(WEBDIR), $(CONFDIR)/probattnd.yaml, $(UNITDIR)/probattnd.service"; \
	echo "Next: systemctl daemon-reload && systemctl enable --now probattnd"

## uninstall: remove what install put under DESTDIR/PREFIX (the config in /etc/probattn and the store in
## /var/lib/probattn are kept).
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/probattnd" "$(DESTDIR)$(BINDIR)/probattn" "$(DESTDIR)$(UNITDIR)/probattnd.service"
	rm -rf "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(DOCDIR)" "$(DESTDIR)$(PREFIX)/share/probattn"

## fuzz-build: the fuzz executables (fuzz-request, fuzz-config, fuzz-image, fuzz-rle) with the fuzzer and ASan.
fuzz-build: deps
	@set -e; for t in $(FUZZ_TARGETS); do $(SWIFT) build $(FUZZ_BUILD) --product fuzz-$$t; done

## fuzz: run each target for SECONDS seconds (or RUNS inputs, whichever comes first) (leak detection off: the Swift runtime keeps caches for the process's
## life). Prints libFuzzer's final lines per target (executions, coverage, speed; the whole log is in
## .build-fuzz/fuzz-<name>.log); any crash fails the target.
fuzz: fuzz-build
	@set -e; bin="$$($(SWIFT) build $(FUZZ_BUILD) --show-bin-path)"; mkdir -p .build-fuzz/artifacts; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/corpus/$$t; echo "== fuzz-$$t for $(SECONDS) s"; \
	  status=0; "$$bin/fuzz-$$t" -max_total_time=$(SECONDS) -runs=$(RUNS) -detect_leaks=0 -print_final_stats=1 \
	    -max_len=4096 -rss_limit_mb=2048 -artifact_prefix=.build-fuzz/artifacts/$$t- \
	    .build-fuzz/corpus/$$t Fuzz/corpus/$$t > .build-fuzz/fuzz-$$t.log 2>&1 || status=$$?; \
	  grep -E '^#[0-9]+[[:space:]]+DONE|^Done |^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|ERROR|SUMMARY' \
	    .build-fuzz/fuzz-$$t.log || true; \
	  if [ $$status -ne 0 ]; then echo "fuzz-$$t failed (status $$status); see .build-fuzz/fuzz-$$t.log"; exit 1; fi; \
	done

clean:
	rm -rf .build .build-fuzz
