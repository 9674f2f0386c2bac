# caddy-stepup. `make run` starts the demo, `make test` runs every test
# (installing what the tests need first), `make bench` the benchmarks.

GO       ?= go
BIN      := bin
# A local --with replacement must not be looked up in the module proxy: keep
# the configured proxy but never fall through to a direct fetch.
PROXY    := $(shell $(GO) env GOPROXY | cut -d, -f1)|off
APT_PKGS := wrk oathtool freeradius chromium redis-server redis-tools nodejs
# axe-core (npm) scans the pages in Chromium for accessibility problems;
# installed into a cache outside the tree, found by the tests through
# STEPUP_AXE_JS.
AXE_VERSION   := 4.14.1
TEST_CACHE    ?= $(HOME)/.cache/caddy-stepup
export STEPUP_AXE_JS ?= $(TEST_CACHE)/node_modules/axe-core/axe.min.js

export GOTOOLCHAIN ?= local

.PHONY: all run test deps vet unit xcaddy-smoke build bench load perf fuzz clean mutate

all: test

run:
	$(GO) run ./cmd/caddy run --config Caddyfile.example

# Installs Debian packages the tests need when missing (a missing one fails
# under CI=true), the Go modules, and axe-core.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing ) \
		|| { echo "could not install:$$missing" >&2; exit 1; }; \
	fi
	$(GO) mod download
	@if [ ! -f "$(STEPUP_AXE_JS)" ] || ! grep -q '"version": "$(AXE_VERSION)"' "$(TEST_CACHE)/node_modules/axe-core/package.json" 2>/dev/null; then \
		echo "installing axe-core $(AXE_VERSION) into $(TEST_CACHE)"; \
		if ! command -v npm >/dev/null; then \
			echo "installing npm"; SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
			( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends npm ) \
			|| { echo "npm is missing and could not be installed (Debian package npm)" >&2; exit 1; }; \
		fi; \
		npm install --prefix "$(TEST_CACHE)" --no-save --no-audit --no-fund axe-core@$(AXE_VERSION) >/dev/null \
		|| { echo "could not install axe-core $(AXE_VERSION)" >&2; exit 1; }; \
	fi

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi

unit:
	$(GO) test -race -count=1 ./...

test: deps vet unit xcaddy-smoke

# Build with xcaddy from the manifest, as a plugin user would.
build:
	@mkdir -p $(BIN)
	GOPROXY='$(PROXY)' $(GO) tool xcaddy build $$($(GO) run ./internal/tools/xcaddyargs xcaddy.json) --output $(BIN)/caddy

xcaddy-smoke: build
	@$(BIN)/caddy list-modules > $(BIN)/modules.txt
	@for m in stepup http.handlers.stepup admin.api.stepup stepup.methods.password stepup.methods.external stepup.methods.totp stepup.methods.radius stepup.methods.webauthn stepup.stores.local stepup.stores.memory stepup.stores.redis stepup.notifiers.webhook; do \
		grep -qx "$$m" $(BIN)/modules.txt || { echo "xcaddy build lacks module $$m" >&2; exit 1; }; \
	done
	XDG_DATA_HOME=$(BIN)/data $(BIN)/caddy validate --config testdata/xcaddy-smoke.Caddyfile --adapter caddyfile >/dev/null 2>$(BIN)/validate.log \
		|| { cat $(BIN)/validate.log >&2; exit 1; }
	@echo "xcaddy build: the app, the handler and every method, store and notifier module present, testdata/xcaddy-smoke.Caddyfile valid"

# Go benchmarks of the hot path and session memory, then a load run.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./caddymodule ./stepup
	$(MAKE) --no-print-directory perf

# Whole requests, as issue 13 measures them: Caddy pinned to one core with
# GOMAXPROCS=1, wrk -t1 -c16 pinned to the other, 4 s per case and round
# (in 1 s slices, each between two slices of respond "ok" in the same Caddy
# with the same request), three interleaved rounds, medians; a control case
# (a second plain site) shows the harness's noise; a CPU profile of the
# protected case in bin/perf-protected.pprof.
perf: deps
	@mkdir -p $(BIN)
	$(GO) run ./internal/tools/perf -stores $(PERF_STORES) -profile $(BIN)/perf-protected.pprof

PERF_STORES ?= memory,local,redis

# The whole-request measurement (an older name of perf).
load: perf

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzSafeReturn -fuzztime 20s ./stepup
	$(GO) test -run '^$$' -fuzz FuzzSessionCookie -fuzztime 20s ./stepup
	$(GO) test -run '^$$' -fuzz FuzzParsePasswordHash -fuzztime 20s ./stepup
	$(GO) test -run '^$$' -fuzz FuzzResponse -fuzztime 20s ./stepup/radius
	$(GO) test -run '^$$' -fuzz FuzzKeptRequest -fuzztime 20s ./stepup
	$(GO) test -run '^$$' -fuzz FuzzStoredSession -fuzztime 20s ./stepup
	$(GO) test -run '^$$' -fuzz FuzzFinishLogin -fuzztime 20s ./stepup/webauthn
	$(GO) test -run '^$$' -fuzz FuzzFinishRegistration -fuzztime 20s ./stepup/webauthn
	$(GO) test -run '^$$' -fuzz FuzzCaddyfile -fuzztime 20s ./caddymodule
	$(GO) test -run '^$$' -fuzz FuzzCompiledMatchersAgreeWithCaddy -fuzztime 20s ./caddymodule
	$(GO) test -run '^$$' -fuzz FuzzBodyPreview -fuzztime 20s ./stepup/approval
	$(GO) test -run '^$$' -fuzz FuzzParseWindow -fuzztime 10s ./stepup/approval
	$(GO) test -run '^$$' -fuzz FuzzUnmarshalCaddyfile -fuzztime 10s ./caddymodule/notifiers/webhook
	$(GO) test -run '^$$' -fuzz FuzzScanCookiesAgreesWithTheSeparateReads -fuzztime 20s ./stepup

clean:
	rm -rf $(BIN)

# Mutation testing with gremlins: flips the guards of tiers/ and of the
# engine's decision, session, CSRF, limiter and pending code, and fails
# below the efficacy targets. Slow on 2 cores; not part of `make test`.
mutate:
	$(GO) tool gremlins unleash --workers 1 --timeout-coefficient 10 --threshold-efficacy 95 ./tiers
	$(GO) tool gremlins unleash --workers 1 --timeout-coefficient 10 --threshold-efficacy 85 \
		-E '/' -E '^(audit|credlog|formview|keys|method|methodenv|password|returnurl|storage|variants|pages|usecases|enrol)\.go$$' ./stepup
