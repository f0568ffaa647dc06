# varta-watch — see README.md. Every target runs from a clean clone.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
REVISION ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
# make build GOARCH=arm GOARM=7 names itself armv7, as the cross binaries do.
ifneq ($(GOARM),)
LDFLAGS  += -X main.goarm=$(GOARM)
endif
BIN      := varta-watch

export CGO_ENABLED = 0

.PHONY: all build test test-qemu test-386 run demo cross package bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

# Every test the project has: vet, formatting, unit and end-to-end tests
# (the end-to-end tests build and run the real binary). The top package
# is tested without a package argument, so that go test streams its output
# and the "SKIP: Test…: reason" lines of tests not run for a missing tool or
# privilege show without -v (go test ./... hides a passing package's output).
# vet's printf check is told about format.go's replacements for fmt, so
# that it checks their callers' format strings and arguments too.
PRINTF_FUNCS := sprintf,errorf,wrapf,flagErrorf

test: build
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet -printf.funcs=$(PRINTF_FUNCS) ./...
	$(GO) test -count=1 -timeout 30m
	$(GO) test -count=1 -timeout 30m ./internal/...
	$(MAKE) --no-print-directory test-qemu
	$(MAKE) --no-print-directory test-386

# The unit tests again as a 32-bit program, natively where the kernel runs
# 386 binaries (IA32 emulation): what differs on 32-bit kernels' ABIs (a
# struct timespec of 32-bit fields, for one) is exercised with the real
# syscalls, which qemu-user answers for ARM and MIPS only in part.
test-386:
	@if [ "$$(uname -m)" = x86_64 ] && GOARCH=386 $(GO) run ./internal/cmd/varta-agent --help >/dev/null 2>&1; then \
		echo "unit tests for linux/386, natively"; \
		env VARTA_E2E=0 GOARCH=386 $(GO) test -count=1 -timeout 20m . ./internal/... || exit 1; \
	else \
		echo "SKIP: this machine does not run linux/386 binaries: unit tests for linux/386 not run"; \
	fi

# The unit tests again, compiled for ARM and MIPS and run under qemu-user
# (the end-to-end qemu runs are part of the main suite: TestQemuBeatStallScrape).
test-qemu:
	@for t in "arm GOARM=7 qemu-arm-static" "mipsle GOMIPS=softfloat qemu-mipsel-static"; do \
		set -- $$t; \
		if command -v $$3 >/dev/null 2>&1; then \
			echo "unit tests for linux/$$1 ($$2) under $$3 (SKIP there: the tests whose observer spawns recovery children, which qemu-user can deadlock between fork and exec)"; \
			env VARTA_E2E=0 VARTA_QEMU_USER=1 GOARCH=$$1 $$2 $(GO) test -count=1 -timeout 20m -exec $$3 . ./internal/... || exit 1; \
		else \
			echo "SKIP: $$3 not installed: unit tests for linux/$$1 not run under qemu"; \
		fi; \
	done

run: build
	mkdir -p run
	./$(BIN) --socket run/varta.sock --threshold-ms 2000 \
		--export-file run/events.tsv --prom-addr 127.0.0.1:9100

cross:
	./cross

# .deb and .ipk packages for every Linux target of cross, under dist/ and in
# dist/SHA256SUMS with the binaries (README, "Packages").
package:
	./package

# The benchmark suite (BENCHMARKS.md): the Go benchmarks and the end-to-end
# load scenarios against the built binary, as root, printing one table.
# Raw results and logs go to run/bench/. Takes 7–15 minutes on a 2-vCPU VM.
bench: build
	GO=$(GO) $(GO) run ./internal/cmd/varta-bench --observer ./$(BIN) $(BENCHFLAGS)

# Every fuzz target of every package, FUZZTIME each (go test -fuzz takes
# one target at a time). Narrow with FUZZ=regexp, e.g. make fuzz FUZZ=Parse.
FUZZTIME ?= 20s
FUZZ     ?= .
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' | grep -E -e '$(FUZZ)'); do \
			echo "== $$t ($$pkg, $(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf $(BIN) dist run

demo: build
	mkdir -p run
	$(GO) build -o run/varta-agent ./internal/cmd/varta-agent
	$(GO) run ./internal/cmd/varta-demo --observer ./$(BIN) --agent run/varta-agent
