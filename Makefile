# probattn: build, test, run and install.
#
#   make run      install what is missing, build, start the daemon on loopback with Config/probattnd.yaml
#   make test     install what is missing, build, run the whole test suite
#   make install  install binaries, plugins, default config and the systemd unit under PREFIX (default /usr)

SWIFT       ?= swift
PREFIX      ?= /usr
DESTDIR     ?=
CONFIG      ?= Config/probattnd.yaml
BUILD_FLAGS ?=
# Debian packages the build and tests need (headers through pkg-config; python3-pip for the protocol example test).
APT_PACKAGES := pkg-config libzmq3-dev libopenblas-dev libsqlite3-dev libpng-dev libjpeg62-turbo-dev python3 python3-pip
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: deps pydeps build release test run install clean

## deps: apt-get install the packages above, only those that are missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "System packages present."; fi

## pydeps: pyzmq for the protocol example's test (docs/examples/client.py), only when missing. Debian's pip refuses
## system-wide installs (PEP 668) unless told otherwise, hence the second attempt.
pydeps: deps
	@python3 -c 'import zmq' 2>/dev/null && echo "pyzmq present." || \
	  python3 -m pip install --quiet pyzmq || python3 -m pip install --quiet --break-system-packages pyzmq

build: deps
	$(SWIFT) build $(BUILD_FLAGS)

release: deps
	$(SWIFT) build -c release $(BUILD_FLAGS)

test: deps pydeps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	$(SWIFT) test --skip-build $(BUILD_FLAGS)

## run: the daemon in the foreground (Ctrl-C stops it gracefully): requests on tcp://127.0.0.1:5555, results on
## tcp://127.0.0.1:5556, the SQLite store in ./state, plugins from the build products (next to the binary).
run: build
	mkdir -p state
	exec "$$($(SWIFT) build $(BUILD_FLAGS) --show-bin-path)/probattnd" run --config $(CONFIG)

clean:
	rm -rf .build
