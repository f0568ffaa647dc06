package main

import (
	"fmt"
	"runtime"
	"unsafe"
)

const isLinux = runtime.GOOS == "linux"

func unsafePtr[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }

func fmtSscan(s string, v any) (int, error) { return fmt.Sscan(s, v) }
