// SPDX-License-Identifier: MIT
// Go's own context package on the workloads of bench/bench-ctx.cc.

// Package rctxbench measures Go's context package on the same workloads
// as the C++ suite, so that rctx and mctx can be read against the design
// they transcribe. Benchmark names are the join key used by run.sh.
//
// Go has no release: a context is garbage once unreferenced, so the
// allocation columns (B/op, allocs/op) stand in for rctx_release's cost.
package rctxbench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

type ctxKey int

const (
	keyA ctxKey = iota
	keyB
)

var (
	valA = new(int)
	valB = new(int)

	sinkCtx  context.Context
	sinkAny  any
	sinkErr  error
	sinkBool bool
	sinkDone <-chan struct{}
)

// --- DeriveCancelRelease -----------------------------------------------

func BenchmarkDeriveCancelRelease(b *testing.B) {
	b.Run("parent=background", func(b *testing.B) {
		deriveCancel(b, context.Background())
	})
	b.Run("parent=live_cancel", func(b *testing.B) {
		live, cancel := context.WithCancel(context.Background())
		defer cancel()
		deriveCancel(b, live)
	})
	b.Run("parent=value3", func(b *testing.B) {
		live, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := live
		for i := 0; i < 3; i++ {
			p = context.WithValue(p, ctxKey(10+i), valA)
		}
		deriveCancel(b, p)
	})
}

func deriveCancel(b *testing.B, parent context.Context) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, cancel := context.WithCancel(parent)
		cancel()
		sinkCtx = c
	}
}

// --- TimeoutCancel/live=N ----------------------------------------------

// The live timers survive between the calls Go makes to size a run; they
// are rebuilt only when another size is asked for.
var (
	population     []context.CancelFunc
	populationSize = -1
)

func timerPopulation(n int) {
	if populationSize == n {
		return
	}
	for _, cancel := range population {
		cancel()
	}
	population = make([]context.CancelFunc, 0, n)
	for i := 0; i < n; i++ {
		// One hour, spread so that they do not all expire together.
		d := time.Hour + time.Duration(i%4096)*time.Millisecond
		_, cancel := context.WithTimeout(context.Background(), d)
		population = append(population, cancel)
	}
	populationSize = n
	runtime.GC()
}

func dropPopulation() {
	for _, cancel := range population {
		cancel()
	}
	population = nil
	populationSize = -1
	runtime.GC()
}

func BenchmarkTimeoutCancel(b *testing.B) {
	for _, n := range []int{1000, 100000, 1000000} {
		n := n
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			timerPopulation(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, cancel := context.WithTimeout(
					context.Background(), time.Hour)
				cancel()
				sinkCtx = c
			}
		})
	}
	dropPopulation()
}

// --- WithValue and ValueLookup -----------------------------------------

func BenchmarkWithValue(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sinkCtx = context.WithValue(context.Background(), keyA, valA)
	}
}

func BenchmarkValueLookup(b *testing.B) {
	for _, depth := range []int{1, 8, 64, 1000} {
		live, cancel := context.WithCancel(context.Background())
		p := live
		// Keys 100..100+depth-1 sit from the top down; 100+depth is
		// never set.
		for i := 0; i < depth; i++ {
			p = context.WithValue(p, ctxKey(100+i), i)
		}
		// Keys are boxed once here: boxing an int over 255 allocates,
		// and that is not what is measured.
		finds := []struct {
			name string
			key  any
			want any
		}{
			{"hit_nearest", any(ctxKey(99 + depth)), depth - 1},
			{"hit_deepest", any(ctxKey(100)), 0},
			{"miss", any(ctxKey(100 + depth)), nil},
		}
		for _, f := range finds {
			f := f
			name := fmt.Sprintf("depth=%d/%s", depth, f.name)
			b.Run(name, func(b *testing.B) {
				if got := p.Value(f.key); got != f.want {
					b.Fatalf("Value(%v) = %v, want %v",
						f.key, got, f.want)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					sinkAny = p.Value(f.key)
				}
			})
		}
		cancel()
	}
}

// --- CancelFanout/children=N -------------------------------------------

// One op cancels `groups` parents of n children each (enough groups for
// 10,000 children), timing only the cancels; ns/child is the figure to
// read, as the C++ suite reports time per child.
func BenchmarkCancelFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000, 1000000} {
		n := n
		b.Run(fmt.Sprintf("children=%d", n), func(b *testing.B) {
			groups := 1
			if n < 10000 {
				groups = 10000 / n
			}
			parents := make([]context.Context, groups)
			cancels := make([]context.CancelFunc, groups)
			kids := make([]context.Context, groups*n)
			kidCancels := make([]context.CancelFunc, groups*n)
			var timed time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for g := 0; g < groups; g++ {
					build(parents, cancels,
						kids, kidCancels, g, n)
				}
				b.StartTimer()
				t0 := time.Now()
				for g := 0; g < groups; g++ {
					cancels[g]()
				}
				timed += time.Since(t0)
				b.StopTimer()
				for k := range kids {
					if kids[k].Err() == nil {
						b.Fatal("child not done")
					}
					kidCancels[k]() // a no-op now
				}
				b.StartTimer()
			}
			b.StopTimer()
			perChild := float64(timed.Nanoseconds()) /
				float64(b.N*groups*n)
			b.ReportMetric(perChild, "ns/child")
			for i := range kids {
				kids[i], kidCancels[i] = nil, nil
			}
		})
	}
}

// build makes parent g and its n children, untimed.
func build(parents []context.Context, cancels []context.CancelFunc,
	kids []context.Context, kidCancels []context.CancelFunc, g, n int) {
	parents[g], cancels[g] = context.WithCancel(context.Background())
	for k := 0; k < n; k++ {
		kids[g*n+k], kidCancels[g*n+k] = context.WithCancel(parents[g])
	}
}

// --- ChainCancel/depth=1000 --------------------------------------------

// One op builds a chain of 1,000 cancel contexts, cancels its root, then
// calls every level's own cancel (a no-op by then: the analogue of the C
// suite's release); ns/level is the figure to read.
func BenchmarkChainCancel(b *testing.B) {
	const depth = 1000
	b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
		cancels := make([]context.CancelFunc, depth)
		b.ReportAllocs()
		b.ResetTimer()
		t0 := time.Now()
		for i := 0; i < b.N; i++ {
			p := context.Background()
			for l := 0; l < depth; l++ {
				p, cancels[l] = context.WithCancel(p)
			}
			cancels[0]()
			if p.Err() == nil {
				b.Fatal("leaf not done")
			}
			for l := depth - 1; l >= 0; l-- {
				cancels[l]()
			}
		}
		elapsed := time.Since(t0)
		b.ReportMetric(float64(elapsed.Nanoseconds())/
			float64(b.N*depth), "ns/level")
	})
}

// --- Observers on a live context ---------------------------------------

func BenchmarkDonePoll(b *testing.B) {
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := c.Done()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		select {
		case <-done:
			sinkBool = true
		default:
		}
	}
}

func BenchmarkErr(b *testing.B) {
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkErr = c.Err()
	}
}

// BenchmarkCause needs context.Cause (Go 1.20): see cause_*_test.go.
func BenchmarkCause(b *testing.B) {
	benchCause(b)
}

// BenchmarkAfterFunc needs context.AfterFunc (Go 1.21): see after_*_test.go.
func BenchmarkAfterFunc(b *testing.B) {
	b.Run("register_stop", benchAfterRegisterStop)
	b.Run("register_fire", benchAfterRegisterFire)
}

// BenchmarkDoneChannel is derive, first Done() (the lazily made channel,
// rctx_fd's analogue), cancel.
func BenchmarkDoneChannel(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c, cancel := context.WithCancel(context.Background())
		sinkDone = c.Done()
		cancel()
	}
}

// --- SharedParent/threads=T --------------------------------------------

// Every goroutine derives and cancels under one parent, with GOMAXPROCS
// set to T. Go reports wall time over the ops of all goroutines, as
// Google Benchmark's UseRealTime does over all threads' iterations.
func BenchmarkSharedParent(b *testing.B) {
	for _, t := range []int{1, 2} {
		t := t
		b.Run(fmt.Sprintf("threads=%d", t), func(b *testing.B) {
			old := runtime.GOMAXPROCS(t)
			defer runtime.GOMAXPROCS(old)
			parent, cancel := context.WithCancel(
				context.Background())
			defer cancel()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, cc := context.WithCancel(parent)
					cc()
					if c.Err() == nil {
						panic("child not done")
					}
				}
			})
		})
	}
}

// --- Request -----------------------------------------------------------

// One op is one server request: a 1 s timeout under a long-lived root,
// two values, three sub-calls with their own 100 ms timeouts each doing a
// value lookup and an Err check, then everything cancelled.
func BenchmarkRequest(b *testing.B) {
	root, cancelRoot := context.WithCancel(context.Background())
	defer cancelRoot()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, cancelR := context.WithTimeout(root, time.Second)
		v1 := context.WithValue(r, keyA, valA)
		v2 := context.WithValue(v1, keyB, valB)
		for s := 0; s < 3; s++ {
			sc, cancelS := context.WithTimeout(v2,
				100*time.Millisecond)
			sinkAny = sc.Value(keyA)
			sinkErr = sc.Err()
			cancelS()
		}
		cancelR()
	}
}

// --- Parallel/op=O/parent=P/threads=T ----------------------------------

// requestOp is one op of BenchmarkRequest, rooted at root.
func requestOp(root context.Context) {
	r, cancelR := context.WithTimeout(root, time.Second)
	v1 := context.WithValue(r, keyA, valA)
	v2 := context.WithValue(v1, keyB, valB)
	for s := 0; s < 3; s++ {
		sc, cancelS := context.WithTimeout(v2, 100*time.Millisecond)
		sinkAny = sc.Value(keyA)
		sinkErr = sc.Err()
		cancelS()
	}
	cancelR()
}

// BenchmarkParallel runs one op on each of T goroutines with GOMAXPROCS
// set to T (1 and the CPU count), reporting wall time over all their
// ops like bench-ctx's Parallel rows: derive (WithCancel, cancel),
// timeout (WithTimeout 1h, cancel) and request (requestOp), under one
// shared live parent, a live parent per goroutine, or Background.
func BenchmarkParallel(b *testing.B) {
	threads := []int{1}
	if n := runtime.NumCPU(); n > 1 {
		threads = append(threads, n)
	}
	for _, op := range []string{"derive", "timeout", "request"} {
		for _, pk := range []string{"shared", "own", "background"} {
			// the same rows as bench-ctx registers
			if (op == "derive" && pk == "shared") ||
				(op == "timeout" && pk != "background") {
				continue
			}
			for _, t := range threads {
				op, pk, t := op, pk, t
				name := fmt.Sprintf("op=%s/parent=%s/threads=%d",
					op, pk, t)
				b.Run(name, func(b *testing.B) {
					parallelRun(b, op, pk, t)
				})
			}
		}
	}
}

func parallelRun(b *testing.B, op, pk string, t int) {
	old := runtime.GOMAXPROCS(t)
	defer runtime.GOMAXPROCS(old)
	shared, cancelShared := context.WithCancel(context.Background())
	defer cancelShared()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := context.Background()
		switch pk {
		case "shared":
			p = shared
		case "own":
			own, cancelOwn := context.WithCancel(p)
			defer cancelOwn()
			p = own
		}
		for pb.Next() {
			switch op {
			case "derive":
				c, cc := context.WithCancel(p)
				cc()
				if c.Err() == nil {
					panic("child not done")
				}
			case "timeout":
				_, cc := context.WithTimeout(p, time.Hour)
				cc()
			default:
				requestOp(p)
			}
		}
	})
}

// --- Footprint/kind=K ----------------------------------------------------

// footprintLive is the number of contexts held at once to measure the
// live heap per context, as perf/footprint does for rctx.
const footprintLive = 200000

var (
	footprintCache     = map[string]float64{}
	footprintParent, _ = context.WithCancel(context.Background())
)

// liveBytes holds footprintLive contexts of one kind under Background
// (child: under one live parent; with their cancel functions, which a
// caller holds too) and returns
// the growth of the live heap per context, after a GC on either side.
func liveBytes(kind string) float64 {
	if v, ok := footprintCache[kind]; ok {
		return v
	}
	ctxs := make([]context.Context, footprintLive)
	cancels := make([]context.CancelFunc, footprintLive)
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range ctxs {
		switch kind {
		case "value":
			ctxs[i] = context.WithValue(context.Background(), keyA,
				valA)
		case "cancel":
			ctxs[i], cancels[i] = context.WithCancel(
				context.Background())
		case "child":
			ctxs[i], cancels[i] = context.WithCancel(parent)
		default:
			ctxs[i], cancels[i] = context.WithTimeout(
				context.Background(), time.Hour)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	v := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) /
		footprintLive
	for _, c := range cancels {
		if c != nil {
			c()
		}
	}
	runtime.KeepAlive(ctxs)
	footprintCache[kind] = v
	return v
}

// BenchmarkFootprint makes one context of a kind per op under
// Background (child: under a live parent): B/op (-benchmem) is what one context allocates, and the
// live-B/ctx metric the live heap per context over footprintLive held
// at once.
func BenchmarkFootprint(b *testing.B) {
	for _, kind := range []string{"value", "cancel", "timer", "child"} {
		kind := kind
		b.Run("kind="+kind, func(b *testing.B) {
			live := liveBytes(kind)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				switch kind {
				case "value":
					sinkCtx = context.WithValue(
						context.Background(), keyA,
						valA)
				case "cancel", "child":
					p := context.Background()
					if kind == "child" {
						p = footprintParent
					}
					var cc context.CancelFunc
					sinkCtx, cc = context.WithCancel(p)
					cc()
				default:
					var cc context.CancelFunc
					sinkCtx, cc = context.WithTimeout(
						context.Background(),
						time.Hour)
					cc()
				}
			}
			b.ReportMetric(live, "live-B/ctx")
		})
	}
}
