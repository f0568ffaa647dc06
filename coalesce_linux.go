//go:build linux

package main

// coalesceEnabled: only Linux bounds the datagram queue by a count
// (max_dgram_qlen) that the coalescer can plan against.
var coalesceEnabled = true
