// SPDX-License-Identifier: MIT
// Cause benchmark skips on Go older than 1.20 (no context.Cause).

//go:build !go1.20

package rctxbench

import (
	"runtime"
	"testing"
)

func benchCause(b *testing.B) {
	b.Skip("context.Cause needs Go 1.20; this is " + runtime.Version())
}
