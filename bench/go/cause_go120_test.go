// SPDX-License-Identifier: MIT
// Cause benchmark, for Go 1.20 and later (context.Cause).

//go:build go1.20

package rctxbench

import (
	"context"
	"testing"
)

// context.Cause on a live cancel context.
func benchCause(b *testing.B) {
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkErr = context.Cause(c)
	}
}
