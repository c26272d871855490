// SPDX-License-Identifier: MIT
// AfterFunc benchmarks, for Go 1.21 and later (context.AfterFunc).

//go:build go1.21

package rctxbench

import (
	"context"
	"sync"
	"testing"
)

func noop() {}

// Register on a live context, then stop before it is done.
func benchAfterRegisterStop(b *testing.B) {
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stop := context.AfterFunc(c, noop)
		if !stop() {
			b.Fatal("stop returned false")
		}
	}
}

// Derive, register, cancel: Go starts fn in its own goroutine, so the
// run ends by waiting for every fn (their cost is part of the op).
func benchAfterRegisterFire(b *testing.B) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	var wg sync.WaitGroup
	wg.Add(b.N)
	fn := func() { wg.Done() }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, cancel := context.WithCancel(parent)
		context.AfterFunc(c, fn)
		cancel()
	}
	wg.Wait()
}
