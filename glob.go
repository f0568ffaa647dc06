package main

import "unicode/utf8"

// globMatch reports whether name matches pattern as contract §9 defines a
// glob: '*' is any run of characters, '/' included, '?' is exactly one
// character, and every other byte is itself (there is no escape and no
// character class). A character is one UTF-8 sequence; a byte that does
// not start a valid sequence counts as one character of its own.
//
// It runs without recursion and without allocating: two cursors walk the
// pattern and the name, and on a mismatch the match restarts one character
// further after the most recent '*' only. That is enough because a later
// '*' can absorb whatever an earlier one would have, so the time is
// O(len(pattern)·len(name)) in the worst case and never exponential.
func globMatch(pattern string, name []byte) bool {
	p, n := 0, 0
	starP, starN := -1, 0 // the latest '*' and where its run ends for now
	for n < len(name) {
		if p < len(pattern) {
			switch pattern[p] {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				_, sz := utf8.DecodeRune(name[n:])
				p++
				n += sz
				continue
			default:
				_, pl := utf8.DecodeRuneInString(pattern[p:])
				_, nl := utf8.DecodeRune(name[n:])
				if pl == nl && pattern[p:p+pl] == string(name[n:n+nl]) {
					p += pl
					n += nl
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the latest '*' take one more character and retry after it.
		_, sz := utf8.DecodeRune(name[starN:])
		starN += sz
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
