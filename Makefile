# switchboard: `make run` brings the whole stack up in the foreground,
# `make test` runs vet and every test with the race detector.
SHELL := /usr/bin/env bash
export PATH := $(PATH):/usr/local/go/bin
MODULES := proto internal gateway handlers-svc bench e2e
FUZZTIME ?= 100000x

.PHONY: all build run test vet unit fuzz bench bench-quick bench-scale bench-go deps token clean

all: build

build:
	go build -o bin/gateway ./gateway/cmd/gateway
	go build -o bin/handlers-svc ./handlers-svc/cmd/handlers-svc

deps:
	@bash .ci/deps.sh test

run: build
	@bash .ci/deps.sh run
	@bash .ci/run-stack.sh

test: deps vet unit fuzz

vet:
	@for m in $(MODULES); do echo "go vet ./$$m/..."; (cd $$m && go vet ./...) || exit 1; done

unit:
	@for m in $(MODULES); do echo "go test -race ./$$m/..."; (cd $$m && go test -race -count=1 -timeout 20m ./...) || exit 1; done

# Each fuzz target of a decoder of outside input, briefly (FUZZTIME each):
# envelopes, dispatches, NATS requests and replies, JWTs, handler args, the
# client pings and pongs the gateway reads off the socket itself, and the
# gateway's WebSocket stream and frames as the load generator reads them.
FUZZ_DIRS := proto gateway/internal/auth gateway/internal/ws bench/loadgen handlers-svc/event
fuzz:
	@for d in $(FUZZ_DIRS); do \
		for f in $$(cd $$d && go test -list '^Fuzz' . | grep '^Fuzz'); do \
			echo "go test -fuzz=^$$f\$$ -fuzztime=$(FUZZTIME) ./$$d"; \
			(cd $$d && go test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) .) || exit 1; \
		done; done

# The performance scenario over the whole stack (2 workers) plus the Go
# benchmarks; adds its rows to bench/results/runs.csv, replaces
# bench/results/load.md and redraws docs/p99.svg. bench-quick: a ~30 s smoke run.
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

# Go benchmarks of the hot paths only, with allocations.
bench-go:
	@for m in $(MODULES); do (cd $$m && go test -run='^$$' -bench=. -benchmem ./...) || exit 1; done

# make token ID=alice prints a dev token for any user id.
token: build
	@GATEWAY_DEV=1 ./bin/gateway token $(or $(ID),alice)

clean:
	rm -rf bin
