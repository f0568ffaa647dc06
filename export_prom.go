package main

import "errors"

// promServer serves GET /metrics from the event loop. (Issue "Exporters".)
type promServer struct{}

func newPromServer(o *observer) (*promServer, error) {
	return nil, errors.New("--prom-addr: the metrics endpoint is not built yet")
}

func (p *promServer) addr() string                   { return "" }
func (p *promServer) owns(fd int) bool               { return false }
func (p *promServer) handle(ev pollEvent, now int64) {}
func (p *promServer) nextDeadline() int64            { return 0 }
func (p *promServer) fire(now int64)                 {}
func (p *promServer) close()                         {}
