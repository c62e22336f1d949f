# sfb-matrix-bridge — build, test and demo.
#
#   make demo    build everything, start Synapse + the SfB simulator + the
#                bridge on loopback and show a bridged conversation
#                (DEMOFLAGS=-sip=per_user or -sip=trusted: over SIP)
#   make test    lint, unit + end-to-end tests (real Synapse, PostgreSQL),
#                short fuzz runs: what CI runs
#   make bench   the standard bench scenarios (docs/performance.md);
#                make bench SCENARIO=logins N=5000 for one of them
#   make build   binaries into bin/
#   make lint    gofmt, go vet, staticcheck
#   make clean   remove bin/ and the test cache (keeps the Synapse venv)

GO        ?= go
TAGS      ?= goolm
GOFLAGS_T := -tags $(TAGS)
BIN       := bin
# Fuzz each target this long in "make test"; "make fuzz FUZZTIME=5m" for more.
FUZZTIME  ?= 10s
# The race detector costs about 2x CPU; the suite stays well inside CI's
# budget on 2 cores with it, so it is on. RACE= turns it off.
RACE      ?= -race
TESTTIMEOUT ?= 20m
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# In CI (CI set, and not false or 0) no test may skip.
SUMMARYFLAGS := $(if $(filter-out false 0,$(CI)),-ci)

# The bench: SCENARIO is sfb-to-matrix, matrix-to-sfb, logins, crash,
# presence-storm, sip-scale, sip-per-user or standard (the first four); N overrides the scenario's
# default; BENCHFLAGS adds flags (bin/sfb-bench -h lists them). Results go
# to $(BENCHOUT).
SCENARIO  ?= standard
N         ?=
BENCHOUT  ?= bench-results
BENCHFLAGS ?=

.PHONY: all build demo demo-check bench test unit vet fuzz lint fmt-check staticcheck synapse-venv postgres chromium sipe interop clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_T) -o $(BIN)/ ./cmd/...

# The Synapse virtualenv is created once and cached under
# $${SFB_CACHE_DIR:-$$HOME/.cache/sfb-matrix-bridge}.
synapse-venv:
	@bash scripts/synapse-venv.sh >/dev/null

postgres:
	@bash scripts/ensure-postgres.sh

# Debian's chromium, for the dashboard's browser test; installed by the
# script when missing, never downloaded by a Go tool.
chromium:
	@bash scripts/ensure-chromium.sh >/dev/null

# Debian's pidgin-sipe, finch, tmux and D-Bus tools, for the interop tests
# with a real SfB client (internal/pidginsipe).
sipe:
	@bash scripts/ensure-sipe.sh >/dev/null

demo: build synapse-venv
	SFB_SYNAPSE_VENV="$$(bash scripts/synapse-venv.sh)" $(BIN)/sfb-demo -bridge $(BIN)/sfb-matrix-bridge $(DEMOFLAGS)

# The demo's scripted mode: one round trip through Synapse, the bridge and
# the simulator, on SQLite; fails when the round trip does.
demo-check: build synapse-venv
	SFB_SYNAPSE_VENV="$$(bash scripts/synapse-venv.sh)" $(BIN)/sfb-demo -once -port 0 -bridge $(BIN)/sfb-matrix-bridge

bench: build synapse-venv postgres
	SFB_SYNAPSE_VENV="$$(bash scripts/synapse-venv.sh)" $(BIN)/sfb-bench -bridge $(BIN)/sfb-matrix-bridge \
		-scenario $(SCENARIO) $(if $(N),-n $(N)) -out $(BENCHOUT) $(BENCHFLAGS)

vet:
	$(GO) vet $(GOFLAGS_T) ./...

# SFB_E2E=1 makes the end-to-end tests run (and CI=true makes a homeserver,
# database or UCWA reference that is missing a failure rather than a skip).
# The results go through scripts/testsummary, which ends with every skipped
# test and its reason; under CI=true a skipped test fails the run.
unit: synapse-venv postgres chromium sipe
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/testsummary ./scripts/testsummary
	SFB_E2E=1 SFB_SYNAPSE_VENV="$$(bash scripts/synapse-venv.sh)" SFB_CHROMIUM="$$(bash scripts/ensure-chromium.sh)" \
		$(GO) test -json $(GOFLAGS_T) $(RACE) -count=1 -timeout $(TESTTIMEOUT) ./... 2>&1 | $(BIN)/testsummary $(SUMMARYFLAGS)

# The interop tests with a real SfB client, pidgin-sipe in finch, alone
# (they are part of "make test" too): against the simulator, and through
# the bridge to a Matrix user.
interop: synapse-venv postgres sipe
	SFB_E2E=1 SFB_SYNAPSE_VENV="$$(bash scripts/synapse-venv.sh)" \
		$(GO) test $(GOFLAGS_T) $(RACE) -count=1 -run 'PidginSipe' ./internal/pidginsipe/ ./e2e/

fuzz:
	GO=$(GO) GOTAGS=$(TAGS) bash scripts/fuzz.sh $(FUZZTIME)

# Lint first: it is fast and fails before the long runs start. The unit and
# end-to-end tests last, so that their summary of skipped tests ends the
# output.
test: lint demo-check fuzz unit

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go') 2>&1)"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

staticcheck:
	$(GO) run $(STATICCHECK) -tags $(TAGS) ./...

lint: fmt-check vet staticcheck

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
