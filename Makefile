# varta-watch — see README.md. Every target runs from a clean clone.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
REVISION ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
BIN      := varta-watch

export CGO_ENABLED = 0

.PHONY: all build test unit run demo cross bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

# Every test the project has: vet, formatting, unit and end-to-end tests
# (the end-to-end tests build and run the real binary).
test: build
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

run: build
	mkdir -p run
	./$(BIN) --socket run/varta.sock --threshold-ms 2000 \
		--export-file run/events.tsv --prom-addr 127.0.0.1:9100

cross:
	./cross

# The benchmark suite (BENCHMARKS.md): the Go benchmarks and the end-to-end
# load scenarios against the built binary, as root, printing one table.
# Raw results and logs go to run/bench/. Takes about three minutes.
bench: build
	GO=$(GO) $(GO) run ./internal/cmd/varta-bench --observer ./$(BIN) $(BENCHFLAGS)

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime 60s .

clean:
	rm -rf $(BIN) dist run
