# avfleet: one static binary. `make demo` and `make test` work on a fresh
# Debian/Ubuntu machine as root: they install the ClamAV packages when missing.
# Go 1.26 (see go.mod); the official tarball's place is searched too, since a
# root shell's PATH often lacks it.
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/avfleet/avfleet/internal/version.Version=$(VERSION)
BIN      := bin/avfleet
CLAMAV_PKGS := clamav clamav-daemon clamav-freshclam clamav-testfiles
# Test-only tools: rsyslog receives the agent's RFC 5424 syslog, nginx is the
# reference server in the benchmarks, systemd checks the units.
TEST_PKGS := rsyslog nginx-light systemd

.PHONY: build test deps test-deps demo bench fuzz vet clean deb go-check

go-check:
	@command -v $(GO) >/dev/null 2>&1 || { echo "Go 1.26 or newer is needed to build avfleet: install it from https://go.dev/dl (Debian's golang-go is too old)" >&2; exit 2; }

build: go-check
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/avfleet

# deps installs the ClamAV packages (the scanning engine avfleet drives) if
# clamd is missing. Needs root and apt-get; elsewhere install them yourself.
deps:
	@if ! command -v clamscan >/dev/null 2>&1 || [ ! -x /usr/sbin/clamd ] || ! command -v freshclam >/dev/null 2>&1 || [ ! -d /usr/share/clamav-testfiles ]; then \
		echo "installing $(CLAMAV_PKGS) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CLAMAV_PKGS) >/dev/null; \
	fi

test-deps: deps
	@for p in $(TEST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

test: test-deps build vet
	AVFLEET_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m ./...
	cd deploy/kubernetes && $(GO) vet ./... && $(GO) test -count=1 ./...

# deb builds dist/avfleet_<version>_<arch>.deb with nfpm, a Go tool kept in
# the separate module deploy/tools; no Docker.
deb: build
	GO=$(GO) ./deploy/debian/build-deb.sh $(BIN) $(VERSION) dist

demo: deps build
	./$(BIN) demo

bench: deps build
	./bench/run.sh

# fuzz runs every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	./bench/fuzz.sh $(FUZZTIME)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

clean:
	rm -rf bin dist
