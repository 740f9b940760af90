package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// A job is one Parallel call: chunks of [0, n) handed out by an atomic counter to the caller
// and to the pool's idle workers. Jobs are recycled, so a call allocates nothing but the
// closure its caller passes (a goroutine per call cost four to five allocations, which decode
// paid for every matrix of every layer of every token).
type job struct {
	f        func(lo, hi int)
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
		j.f(lo, min(lo+j.chunk, j.n))
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
func Parallel(n, chunk int, f func(lo, hi int)) {
	chunk = max(chunk, 1)
	workers := runtime.GOMAXPROCS(0)
	if n <= chunk || workers == 1 {
		if n > 0 {
			f(0, n)
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
	j.f, j.n, j.chunk = f, n, chunk
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
	j.f = nil
	select {
	case spareJobs <- j:
	default:
	}
}
