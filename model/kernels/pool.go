package kernels

import (
	"math/bits"
	"sync"
	"unsafe"
)

// scratchPool hands out scratch slices by size class (capacity 2^c). Classes up to keepBytes
// live on a mutex-guarded free list that the GC leaves alone, so decode, which asks for the
// same small buffers every token from whichever goroutine, always finds them (a sync.Pool
// keeps a per-P private slot other Ps cannot see, and loses everything at each GC: the pure-Go
// path missed it on every token). Larger classes (prefill's packed activations, up to tens of
// MiB) go to a sync.Pool, so a finished prefill's buffers do not stay resident.
type scratchPool[T any] struct {
	mu    sync.Mutex
	small [48][]*[]T
	large [48]sync.Pool
}

const (
	keepBytes    = 1 << 20
	keepPerClass = 8
)

func (sp *scratchPool[T]) get(n int) *[]T {
	c := bits.Len(uint(max(n, 1) - 1))
	if sp.kept(c) {
		sp.mu.Lock()
		if l := len(sp.small[c]); l > 0 {
			p := sp.small[c][l-1]
			sp.small[c] = sp.small[c][:l-1]
			sp.mu.Unlock()
			*p = (*p)[:n]
			return p
		}
		sp.mu.Unlock()
	} else if p, ok := sp.large[c].Get().(*[]T); ok {
		*p = (*p)[:n]
		return p
	}
	s := make([]T, n, 1<<c)
	return &s
}

func (sp *scratchPool[T]) put(p *[]T) {
	c := bits.Len(uint(cap(*p) - 1))
	if !sp.kept(c) {
		sp.large[c].Put(p)
		return
	}
	sp.mu.Lock()
	if len(sp.small[c]) < keepPerClass {
		sp.small[c] = append(sp.small[c], p)
	}
	sp.mu.Unlock()
}

func (sp *scratchPool[T]) kept(class int) bool {
	var zero T
	return (1<<class)*int(unsafe.Sizeof(zero)) <= keepBytes
}

var (
	wordScratch  scratchPool[uint32]
	floatScratch scratchPool[float32]
)

// words returns a scratch []uint32 of length n; give it back with putWords.
func words(n int) *[]uint32   { return wordScratch.get(n) }
func putWords(p *[]uint32)    { wordScratch.put(p) }
func floats(n int) *[]float32 { return floatScratch.get(n) }
func putFloats(p *[]float32)  { floatScratch.put(p) }
