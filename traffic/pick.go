package traffic

// Pick chooses one of n weighted candidates with the random draw rnd, the way a gateway chooses
// a split's revision: candidate i is chosen for weight(i) of every total-weight consecutive
// draws. Only the candidates of the highest rank that has any weight take part, so a caller can
// prefer some (the activator ranks the revisions whose traffic it receives first) and fall back
// to the others when none of those has weight. ok is false when no candidate has weight.
//
// weight and rank are called with 0 <= i < n, and more than once for a candidate: they should
// read what the caller already knows (the activator's routes.Pick looks every candidate's rank up
// once, before it calls Pick).
func Pick(n int, weight func(i int) uint32, rank func(i int) int, rnd uint64) (i int, ok bool) {
	best, total := 0, uint64(0)
	for i := range n {
		w := weight(i)
		if w == 0 {
			continue
		}
		switch r := rank(i); {
		case total == 0 || r > best:
			best, total = r, uint64(w)
		case r == best:
			total += uint64(w)
		}
	}
	if total == 0 {
		return 0, false
	}
	draw := rnd % total
	for i := range n {
		w := uint64(weight(i))
		if w == 0 || rank(i) != best {
			continue
		}
		if draw < w {
			return i, true
		}
		draw -= w
	}
	return 0, false // unreachable: the draw is below the total
}
