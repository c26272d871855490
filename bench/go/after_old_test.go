// SPDX-License-Identifier: MIT
// AfterFunc benchmarks skip on Go older than 1.21 (no context.AfterFunc).

//go:build !go1.21

package rctxbench

import (
	"runtime"
	"testing"
)

func benchAfterRegisterStop(b *testing.B) {
	b.Skip("context.AfterFunc needs Go 1.21; this is " + runtime.Version())
}

func benchAfterRegisterFire(b *testing.B) {
	b.Skip("context.AfterFunc needs Go 1.21; this is " + runtime.Version())
}
