//go:build !linux

package main

import (
	"errors"
	"os"
	"testing"
)

func TestMaxDgramQlenNotLinux(t *testing.T) {
	if _, err := maxDgramQlen(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("maxDgramQlen() error = %v, want one wrapping os.ErrNotExist", err)
	}
}
