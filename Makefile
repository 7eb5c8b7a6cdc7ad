# switchboard: `make run` brings the whole stack up in the foreground,
# `make test` runs vet and every test with the race detector.
SHELL := /usr/bin/env bash
export PATH := $(PATH):/usr/local/go/bin
# -trimpath: compiled packages record no directory of this checkout, so a
# second clone (CI's, a worktree) finds them in the build cache instead of
# compiling every module again with -race, which is most of make test's time.
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)
MODULES := proto internal gateway handlers-svc bench e2e
# The other platforms every module must vet and build for (make cross):
# macOS, where backend teams work, on both of its architectures.
CROSS_PLATFORMS ?= darwin/arm64 darwin/amd64
FUZZTIME ?= 100000x
# How long the fuzzer may spend shrinking a new interesting input (Go's
# default is 60 s, and each shrink stalls the run: 45 s of FuzzAppendString's
# 54 s in one CI run went to one). A failure is still reported, less shrunk.
FUZZMINIMIZETIME ?= 2s

.PHONY: all build run test vet cross unit e2e-per-user e2e-cluster fuzz mobile soak bench bench-quick bench-scale bench-fanout profile-fanout profile-load bench-go bench-script deps token clean

all: build

build:
	go build -o bin/gateway ./gateway/cmd/gateway
	go build -o bin/handlers-svc ./handlers-svc/cmd/handlers-svc

deps:
	@bash .ci/deps.sh test

run: build
	@bash .ci/deps.sh run
	@bash .ci/run-stack.sh

test: deps vet cross unit e2e-per-user e2e-cluster fuzz

vet:
	@unformatted="$$(gofmt -l $(MODULES) docs/examples)"; if [ -n "$$unformatted" ]; then echo "not gofmt'd:"; echo "$$unformatted"; exit 1; fi
	@for m in $(MODULES); do echo "go vet ./$$m/..."; (cd $$m && go vet ./...) || exit 1; done

# GOOS=darwin go vet and go build of every module: Linux-only code sits
# behind build tags with a fallback, and this keeps it there.
cross:
	@for m in $(MODULES); do for p in $(CROSS_PLATFORMS); do \
		echo "GOOS=$${p%/*} GOARCH=$${p#*/} go vet ./$$m/... && go build ./$$m/..."; \
		(cd $$m && GOOS=$${p%/*} GOARCH=$${p#*/} go vet ./... && GOOS=$${p%/*} GOARCH=$${p#*/} go build ./...) || exit 1; \
	done; done

# The end-to-end packages (e2e, e2e/recovery) each start whole stacks: one
# package at a time, so that they do not starve each other on a small box.
# internal/rawconn once more without -race: a race build moves its bytes by
# syscall.Read and Write, so only this run tests its raw system calls.
unit:
	@for m in $(MODULES); do p=""; [ $$m = e2e ] && p="-p 1"; \
		echo "go test -race $$p ./$$m/..."; (cd $$m && go test -race $$p -count=1 -timeout 30m ./...) || exit 1; done
	@echo "go test ./internal/rawconn"; cd internal && go test -count=1 ./rawconn

# The end-to-end checks of delivery, rooms and recovery once more with
# FANOUT_MODE=per_user on both services (testkit reads E2E_FANOUT_MODE);
# unit has run them, and everything else, in the default shared mode. The
# recovery suite, where there is one, runs whole.
E2E_PER_USER_RUN := Delivery|SendMessage|PostUpdated|DispatchAPI|Rooms|Recover|Resume|RedisDownAndBack|Revoke
# The cluster set-up also runs the per_user tests that set the mode
# themselves, presence (its keys in each user's slot) and the lifecycle
# hooks (over a NATS cluster).
E2E_CLUSTER_RUN := $(E2E_PER_USER_RUN)|PerUser|Disconnect|Presence|LifecycleHooks
e2e-per-user:
	@echo "E2E_FANOUT_MODE=per_user go test -race -run '$(E2E_PER_USER_RUN)' ./e2e/"
	@cd e2e && E2E_FANOUT_MODE=per_user go test -race -count=1 -timeout 10m -run '$(E2E_PER_USER_RUN)' .
	@if [ -d e2e/recovery ]; then echo "E2E_FANOUT_MODE=per_user go test -race ./e2e/recovery/"; \
		(cd e2e && E2E_FANOUT_MODE=per_user go test -race -count=1 -timeout 10m ./recovery/...) || exit 1; fi

# The third set-up of the same end-to-end checks: per_user on a 3-master
# Redis Cluster (sharded pub/sub, one script call per partition) with a
# 3-node NATS cluster (testkit reads E2E_REDIS and E2E_NATS). The few tests
# that act on the one Redis server skip there, saying why.
e2e-cluster:
	@echo "E2E_FANOUT_MODE=per_user E2E_REDIS=cluster E2E_NATS=cluster go test -race -run '$(E2E_CLUSTER_RUN)' ./e2e/"
	@cd e2e && E2E_FANOUT_MODE=per_user E2E_REDIS=cluster E2E_NATS=cluster go test -race -count=1 -timeout 10m -run '$(E2E_CLUSTER_RUN)' .
	@if [ -d e2e/recovery ]; then echo "E2E_FANOUT_MODE=per_user E2E_REDIS=cluster E2E_NATS=cluster go test -race ./e2e/recovery/"; \
		(cd e2e && E2E_FANOUT_MODE=per_user E2E_REDIS=cluster E2E_NATS=cluster go test -race -count=1 -timeout 10m ./recovery/...) || exit 1; fi

# Each fuzz target of a decoder of outside input, briefly (FUZZTIME each):
# envelopes, dispatches, NATS requests and replies, JWTs, handler args, the
# client pings and pongs the gateway reads off the socket itself, the
# gateway's WebSocket stream and frames as the load generator reads them,
# the query of a client's upgrade request (resume positions, prev), the
# redaction of the server URLs the services log, the dispatch API's
# request bodies, the stream entries and script replies read back from
# Redis, the idempotency records kept there, the announced sockets a
# worker reads from its predecessor, and the settings the supervisor
# hands its workers.
FUZZ_DIRS := proto internal/redact internal/streams gateway/internal/auth gateway/internal/ws gateway/internal/announced gateway/internal/config gateway/internal/worker gateway/internal/query bench/loadgen handlers-svc/event handlers-svc/internal/httpapi handlers-svc/internal/idem
fuzz:
	@for d in $(FUZZ_DIRS); do \
		for f in $$(cd $$d && go test -list '^Fuzz' . | grep '^Fuzz'); do \
			echo "go test -fuzz=^$$f\$$ -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) ./$$d"; \
			(cd $$d && go test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) .) || exit 1; \
		done; done

# The fault matrix of zero-gap delivery (e2e/recovery) as a long soak:
# SOAK_EVENTS events checked in all, shared by its load-bearing tests, at
# SOAK_RATE posts a second each, through their faults, without the race
# detector. Writes bench/results/soak.md and adds a row (scenario soak) to
# bench/results/runs.csv. make test runs the same tests, short.
SOAK_EVENTS ?= 1000000
SOAK_RATE ?= 600
# The JavaScript client on a flaky phone network (e2e/mobile_test.go), every
# case, with 500 flaps; make test runs three of its cases, with 40 flaps.
mobile:
	@bash .ci/deps.sh test
	cd e2e && MOBILE_FULL=1 SB_FLAPS=500 go test -race -count=1 -timeout 20m -run 'TestClientJSMobile$$' -v .

soak:
	@bash .ci/deps.sh run
	cd e2e && SOAK_EVENTS=$(SOAK_EVENTS) SOAK_RATE=$(SOAK_RATE) \
		SOAK_REPORT=$(CURDIR)/bench/results/soak.md SOAK_CSV=$(CURDIR)/bench/results/runs.csv \
		go test -count=1 -timeout 3h ./recovery/

# The performance scenario over the whole stack (2 workers) plus the Go
# benchmarks and the resume scenario; adds its rows to bench/results/runs.csv,
# replaces bench/results/load.md and redraws docs/p99.svg. bench-quick: a
# short smoke run. Either compares side by side, in the same run, with
# BENCH_BASELINE=<git ref> (that ref's servers, e.g. make bench-quick
# BENCH_BASELINE=fff6f93) or BENCH_COMPARE_RECOVERY=1 (HISTORY_WINDOW=0);
# docs/performance.md has the knobs.
bench:
	@bash .ci/deps.sh run
	@bash bench/run.sh

bench-quick:
	@bash .ci/deps.sh run
	@BENCH_QUICK=1 bash bench/run.sh

# 100,000 idle sockets held (issue 5's scale target): as many workers and
# loadgen processes as the per-process file limit needs; a few minutes.
bench-scale:
	@bash .ci/deps.sh run
	@BENCH_SCALE=1 bash bench/run.sh

# Issue 15's fan-out scenario: 8 workers, 10,000 users, sendMessage load
# and a short saturation search, once with FANOUT_MODE=shared and once with
# per_user; Redis output bytes per dispatch and the share of dispatches a
# worker read with no local recipient. Writes bench/results/fanout.md and
# adds rows (scenario fanout) to bench/results/runs.csv; a few minutes.
# Not part of make bench.
bench-fanout:
	@bash .ci/deps.sh run
	@bash bench/fanout.sh

# Where a delivery's CPU goes, under perf record -a: CPU µs per delivery
# per process, kernel apart from user, system calls per delivery, and the
# ceiling the kernel's share alone puts on deliveries/s. profile-fanout:
# bench-fanout's 1→N phases (bench/results/profile-fanout.md); profile-load:
# the load scenario at R = 1,000 and 4,000 (bench/results/profile-load.md).
# A few minutes each. Need perf (installed if missing) and root.
profile-fanout profile-load:
	@bash .ci/deps.sh run
	@command -v perf >/dev/null || bash .ci/deps.sh run linux-perf
	@bash bench/profile.sh $(@:profile-%=%)

# Instructions Redis runs per recorded event in the publish script, by
# callgrind (deterministic on a noisy box); SCRIPT_BASELINE=<ref> compares
# with that ref's script. Needs valgrind (installed if missing).
bench-script:
	@bash .ci/deps.sh run valgrind
	@bash bench/script-cost.sh

# Go benchmarks of the hot paths only, with allocations.
bench-go:
	@for m in $(MODULES); do (cd $$m && go test -run='^$$' -bench=. -benchmem ./...) || exit 1; done

# make token ID=alice prints a dev token for any user id.
# It builds quietly, so that TOKEN=$$(make token ID=bob) is the token alone.
token:
	@go build -o bin/gateway ./gateway/cmd/gateway
	@GATEWAY_DEV=1 ./bin/gateway token '$(subst ','\'',$(or $(ID),alice))'

clean:
	rm -rf bin
