//go:build !linux

package main

var coalesceEnabled = false
