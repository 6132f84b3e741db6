# smallscale: see README.md. Every target works on a fresh Debian 12 host (as root, or with sudo).
GO ?= go
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: all setup runner tools build demo test test-unit vet fuzz chaos clean

all: build

setup:
	deploy/setup-host.sh

runner: setup
	runners/tiny/build.sh

# The nats CLI, for the protocol example's end-to-end test (docs/examples/nats-submit.sh).
NATSCLI_VERSION := v0.5.0
tools:
	@command -v nats >/dev/null || test -x "$$($(GO) env GOPATH)/bin/nats" || $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

build:
	$(GO) build -o bin/ ./cmd/...

# A worker on an embedded NATS server, one job that boots a real VM, its output.
demo: runner build
	deploy/demo.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

# The whole suite, end-to-end VM tests included: SMALLSCALE_E2E=1 makes them fail, not skip,
# when libvirt or the tiny runner is missing.
test: runner tools vet
	@mkdir -p bin && rm -f bin/chaos-report.txt
	SMALLSCALE_E2E=1 SMALLSCALE_CHAOS_REPORT=$(CURDIR)/bin/chaos-report.txt $(GO) test -race -count=1 -timeout 20m ./...
	@cat bin/chaos-report.txt
	$(MAKE) fuzz FUZZTIME=5s

# Go fuzz targets, each for FUZZTIME (a duration, or a count like 500x). Their seed corpora
# (f.Add and testdata/fuzz/) also run as ordinary tests; an input that fails lands in the
# package's testdata/fuzz/<target>/ and, once checked in, stays as a regression seed.
# Minimizing new corpus entries is capped, or it eats a short run.
FUZZTIME ?= 15s
FUZZMINTIME ?= 2s
FUZZ_TARGETS := queue:FuzzDecodeJob vmrun:FuzzDomainXML files:FuzzCollect
fuzz:
	@fail=; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$name (./$$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${name}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) ./$$pkg || fail="$$fail $$name"; \
	done; test -z "$$fail" || { echo "fuzzing failed:$$fail"; exit 1; }

# The fault-injection suite at full length (SMALLSCALE_CHAOS_SEED=… replays a run). go test hides
# a passing package's output, so the suite writes its summary to a file that is shown after.
CHAOS_JOBS ?= 30
CHAOS_SEED ?=
chaos: runner
	@mkdir -p bin && rm -f bin/chaos-report.txt
	SMALLSCALE_E2E=1 SMALLSCALE_CHAOS_JOBS=$(CHAOS_JOBS) SMALLSCALE_CHAOS_SEED=$(CHAOS_SEED) SMALLSCALE_CHAOS_REPORT=$(CURDIR)/bin/chaos-report.txt $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' ./e2e
	@cat bin/chaos-report.txt

# Pure logic and the queue only: no libvirt needed.
test-unit:
	$(GO) test -race -count=1 ./...

clean:
	rm -rf bin
