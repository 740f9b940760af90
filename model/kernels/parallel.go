package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// A Task is work over an index range that Parallel splits into chunks [lo, hi).
type Task interface{ Run(lo, hi int) }

// funcTask runs a closure as a Task (a func value is a pointer: the conversion allocates nothing).
type funcTask func(lo, hi int)

func (f funcTask) Run(lo, hi int) { f(lo, hi) }

// The pool: GOMAXPROCS−1 workers beside the caller, which works too. A Parallel call posts
// its job in one slot; workers that finished a job watch the slot for spinFor before they
// park, so the fan-outs of a decode step (five per layer, every few microseconds) find them
// awake. Handing each job over a channel to parked workers cost 17–30 µs per fan-out on
// these VMs (two futex wake-ups and a wait), about 8% of a decoded token.
var (
	startPool sync.Once
	posted    atomic.Pointer[job] // the job open to workers, nil when none
	sleepers  atomic.Int32        // parked workers
	wake      chan struct{}       // one token per parked worker to wake
	spareJobs = make(chan *job, 64)
)

// spinFor is how long an idle worker polls for the next job before it parks.
const spinFor = 200 * time.Microsecond

// A job is one Parallel call: chunks of [0, n) handed out by an atomic counter to the caller
// and to whichever workers join. Jobs are recycled (a goroutine per call cost four to five
// allocations, which decode paid for every matrix of every layer of every token).
type job struct {
	t        Task
	n, chunk int
	next     atomic.Int64
	finished atomic.Int64 // chunks done
	joined   atomic.Int32 // workers inside run, or about to check whether they may enter
}

func (j *job) run() {
	for {
		lo := int(j.next.Add(int64(j.chunk))) - j.chunk
		if lo >= j.n {
			return
		}
		j.t.Run(lo, min(lo+j.chunk, j.n))
		j.finished.Add(1)
	}
}

func worker() {
sleep:
	for {
		idle := time.Now()
		for spins := 0; ; spins++ {
			if j := posted.Load(); j != nil {
				j.joined.Add(1)
				if posted.Load() == j { // still open: its fields are this job's
					j.run()
				}
				j.joined.Add(-1)
				idle = time.Now()
				continue
			}
			if spins%64 == 63 {
				if time.Since(idle) > spinFor {
					break
				}
				runtime.Gosched() // the caller may need this P
			}
		}
		sleepers.Add(1)
		for posted.Load() != nil { // a job came in meanwhile: take back the sleep, unless…
			s := sleepers.Load()
			if s == 0 {
				break // …a caller already counted us awake: its token is on the way
			}
			if sleepers.CompareAndSwap(s, s-1) {
				continue sleep
			}
		}
		<-wake
	}
}

// Parallel runs f over [0, n) in chunks of at most chunk, on the calling goroutine and the
// pool's idle workers. A call made while another is posted (from inside a chunk, or from a
// second goroutine) runs on its own caller. The closure escapes to the heap on every call: a
// loop run per token uses a TaskPool.
func Parallel(n, chunk int, f func(lo, hi int)) { ParallelTask(n, chunk, funcTask(f)) }

// ParallelTask is Parallel over t.Run.
func ParallelTask(n, chunk int, t Task) {
	chunk = max(chunk, 1)
	workers := runtime.GOMAXPROCS(0)
	if n <= chunk || workers == 1 {
		if n > 0 {
			t.Run(0, n)
		}
		return
	}
	startPool.Do(func() {
		wake = make(chan struct{}, workers)
		for range workers - 1 {
			go worker()
		}
	})
	var j *job
	select {
	case j = <-spareJobs:
	default:
		j = new(job)
	}
	j.t, j.n, j.chunk = t, n, chunk
	j.next.Store(0)
	j.finished.Store(0)
	if !posted.CompareAndSwap(nil, j) {
		j.run() // the workers are on another job
		recycle(j)
		return
	}
	chunks := int64((n + chunk - 1) / chunk)
	for help := min(int(chunks)-1, workers-1); help > 0; help-- {
		s := sleepers.Load()
		if s == 0 {
			break
		}
		if sleepers.CompareAndSwap(s, s-1) {
			wake <- struct{}{}
		}
	}
	j.run()
	for spins := 0; j.finished.Load() < chunks; spins++ {
		if spins%64 == 63 {
			runtime.Gosched()
		}
	}
	posted.Store(nil)
	for j.joined.Load() != 0 { // a worker between loading the slot and finding it closed
		runtime.Gosched()
	}
	recycle(j)
}

func recycle(j *job) {
	j.t = nil
	select {
	case spareJobs <- j:
	default:
	}
}

// A TaskPool recycles the argument structs (T, whose pointer P is the Task) of one parallel
// loop, so a loop that runs for every layer of every decoded token allocates nothing: the
// closure Parallel takes would be a heap object per call, since the workers see it.
type TaskPool[T any, P interface {
	*T
	Task
}] struct{ structs freeList[T] }

// Run sets a pooled T to args and runs it over [0, n) in chunks of at most chunk.
func (tp *TaskPool[T, P]) Run(n, chunk int, args T) {
	t := tp.structs.get()
	*t = args
	ParallelTask(n, chunk, P(t))
	tp.structs.put(t)
}

// freeList keeps zeroed *T for reuse. Unlike a sync.Pool it keeps them across GCs and
// whichever P asks, so steady-state decode never allocates.
type freeList[T any] struct {
	mu   sync.Mutex
	free []*T
}

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := len(f.free); l > 0 {
		t := f.free[l-1]
		f.free = f.free[:l-1]
		return t
	}
	return new(T)
}

// put zeroes t (it keeps no slices alive) and keeps it.
func (f *freeList[T]) put(t *T) {
	var zero T
	*t = zero
	f.mu.Lock()
	f.free = append(f.free, t)
	f.mu.Unlock()
}
