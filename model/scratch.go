package model

// scratch hands out a step's working buffers. A decode loop keeps one for all its steps, so
// it reuses the same activation, attention and logits buffers token after token instead of
// allocating them. Buffers come back dirty: every user overwrites them.
type scratch struct {
	bufs [][]float32
	next int
	// A step's bookkeeping, reused the same way.
	off, rows, sel []int
	chunks         [][2]int
	invFreq        []float64
	logits         [][]float32
	ffnSeqs        []ffnSeq
}

// get returns the next buffer, length n. A step asks in the same order every time, so each
// slot settles at the size its user needs.
func (s *scratch) get(n int) []float32 {
	if s.next == len(s.bufs) {
		s.bufs = append(s.bufs, nil)
	}
	b := s.bufs[s.next]
	if cap(b) < n {
		b = make([]float32, n)
	}
	s.bufs[s.next] = b[:n]
	s.next++
	return b[:n]
}

// reuseFrom hands the buffers from slot mark on out again: a caller that takes temporaries
// (attention, once per layer and sequence) gives them back for the next call to reuse.
func (s *scratch) reuseFrom(mark int) { s.next = mark }

// floats is how many float32s the buffers hold.
func (s *scratch) floats() int {
	n := 0
	for _, b := range s.bufs {
		n += cap(b)
	}
	return n
}

// takeScratch returns the buffers the last forward or generation left, or a new scratch.
func (m *Model) takeScratch() *scratch {
	if sc := m.spare.Swap(nil); sc != nil {
		return sc
	}
	return new(scratch)
}

// keepScratch keeps sc for the next forward unless it is over spareFloats.
func (m *Model) keepScratch(sc *scratch) {
	if sc.floats() <= spareFloats {
		m.spare.Store(sc)
	}
}

// spareFloats bounds the buffers a Model keeps between forwards (64 MiB: a 1×512 prefill of
// Qwen2-0.5B takes ~32 MiB; a big batch's are left to the GC).
const spareFloats = 16 << 20

// grow returns *p resized to n (contents undefined), reallocating only when it is too small.
func grow[T any](p *[]T, n int) []T {
	if cap(*p) < n {
		*p = make([]T, n)
	}
	*p = (*p)[:n]
	return *p
}
