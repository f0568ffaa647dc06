//go:build !linux

package main

// lockSocketPath takes no lock where there is no abstract socket namespace;
// the connect test on the path still tells a live observer.
func lockSocketPath(path string) (fd int, busy bool) { return -1, false }
