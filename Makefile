# The two commands a newcomer needs: `make demo` and `make test`. Both set
# up what they need first.

GO       ?= go
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# postgresql: the throwaway server the authority's PostgreSQL tests start
# (internal/pgtest); no service of it is used.
APT_PKGS := libopencv-dev pkg-config chromium fonts-wqy-microhei espeak-ng alsa-utils postgresql
FUZZTIME ?= 10s
BIN      := $(CURDIR)/bin

PEER_PKGS := zbar-tools zxing-cpp-tools

# apt_install installs those of the Debian packages $(1) that are missing.
define apt_install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
endef

.PHONY: all setup build test bench bench-setup bench-decode bench-store bench-logs bench-gate bench-screen bench-authority soak fuzz demo demo-live clean

all: build

# Debian packages when missing, then the Go modules, then the spoken
# prompts that are missing (voice/, rendered with espeak-ng).
setup:
	$(call apt_install,$(APT_PKGS))
	$(GO) mod download
	$(GO) run ./internal/voice/gen -out voice

build: setup
	$(GO) build -o $(BIN)/ ./cmd/... ./internal/gatevideo ./internal/gatesim ./internal/screenshots

test: setup
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race ./...
	# Every OpenCV matrix the scanner makes is closed (gocv's Mat profile).
	$(GO) test -race -tags matprofile -run NoMatLeak ./scanner

# Benchmarks: verification on one core, as the README reports it.
bench: setup
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -count 5 ./verify

# The peers the decoder is measured against, from Debian.
bench-setup: setup
	$(call apt_install,$(PEER_PKGS))

# Decode rate and time against zbar and zxing-cpp, and the pipeline end to
# end; the report also goes to bench-decode.md.
bench-decode: bench-setup
	$(GO) run ./internal/decodebench -out bench-decode.md

# Durable events, revocations at one and ten million, the catch-up upload;
# the report also goes to bench-store.md.
bench-store: setup
	$(GO) run ./internal/storebench -out bench-store.md

# A supervisor's questions to a log of a million events: a page of a
# query, an export to CSV, the hash chain verified, a month of figures;
# the report also goes to bench-logs.md. The database takes a minute or
# two to record and is kept in the temporary directory for the next run.
bench-logs: setup
	$(GO) run ./internal/logbench -out bench-logs.md

# A lane end to end: code read to gate pulse, and passages a minute; the
# report also goes to bench-gate.md.
bench-gate: setup
	$(GO) run ./internal/gatebench -out bench-gate.md

# Passage decided to the guard's page drawing it, in Chromium; the report
# also goes to bench-screen.md.
bench-screen: setup
	$(GO) run ./internal/screenbench -out bench-screen.md

# Many checkpoints at once: 10,000 simulated boxes enrol, upload a day of
# 1,000 signed events each and fetch a revocation delta from a real
# `authority serve` on loopback, on bbolt and on a throwaway PostgreSQL;
# delta and snapshot at a million revocations, the authority's peak
# memory. About 6 minutes; the report also goes to bench-authority.md.
bench-authority: setup
	$(GO) run ./internal/authbench -out bench-authority.md

# The crash tests at length: 500 kills of the writer, and of the uploading
# box and the authority.
soak: setup
	CRASH_ROUNDS=500 $(GO) test -count=1 -timeout 60m -run Kill9 ./store
	UPLOAD_KILLS=200 $(GO) test -count=1 -timeout 60m -run Kill9 ./internal/e2e

# A short run of every fuzz target (FUZZTIME each).
fuzz: setup
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "== $$pkg $$target"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

demo: build
	scripts/demo.sh $(BIN) $(CURDIR)/demo-out

# The demo's gate round after round, with its screen, until Ctrl-C.
demo-live: build
	scripts/demo-live.sh $(BIN) $(CURDIR)/demo-out/live

clean:
	rm -rf $(BIN) demo-out
