package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// A Task is work over an index range that Parallel splits into chunks [lo, hi).
type Task interface{ Run(lo, hi int) }

// funcTask runs a closure as a Task (a func value is a pointer: the conversion allocates nothing).
type funcTask func(lo, hi int)

func (f funcTask) Run(lo, hi int) { f(lo, hi) }

// A job is one Parallel call: chunks of [0, n) handed out by an atomic counter to the caller
// and to the pool's idle workers. Jobs are recycled (a goroutine per call cost four to five
// allocations, which decode paid for every matrix of every layer of every token).
type job struct {
	t        Task
	n, chunk int
	next     atomic.Int64
	wg       sync.WaitGroup
}

func (j *job) run() {
	for {
		lo := int(j.next.Add(int64(j.chunk))) - j.chunk
		if lo >= j.n {
			return
		}
		j.t.Run(lo, min(lo+j.chunk, j.n))
	}
}

var (
	startPool sync.Once
	work      = make(chan *job)     // unbuffered: a send succeeds only when a worker is idle
	spareJobs = make(chan *job, 64) // recycled jobs
)

// Parallel runs f over [0, n) in chunks of at most chunk, on as
// many idle workers of a pool (GOMAXPROCS goroutines, started once) as there are chunks. A
// call made while workers are busy (from inside another Parallel) also works on its caller.
// The closure escapes to the heap on every call: a loop run per token uses a TaskPool.
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
		for i := 0; i < workers; i++ {
			go func() {
				for j := range work {
					j.run()
					j.wg.Done()
				}
			}()
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
	// The caller hands every chunk to the workers and waits rather than working itself: a woken
	// worker lands in the caller's P's run-next slot, where the other cores are slow to steal
	// it while the caller keeps its P busy (decode measured ~7% slower that way).
	helpers := min(workers, (n+chunk-1)/chunk)
	handed := 0
	for ; handed < helpers; handed++ {
		j.wg.Add(1)
		select {
		case work <- j:
			continue
		default:
			j.wg.Done()
		}
		break
	}
	if handed < helpers {
		j.run() // some workers are busy (a nested call): do the rest here
	}
	j.wg.Wait()
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
