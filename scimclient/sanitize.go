package scimclient

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTextLen is how many characters of target-provided text Sanitize keeps.
const MaxTextLen = 300

// Sanitize makes text that came from a target (an error's detail, a user's name) safe to
// print, log or store: one line, at most MaxTextLen characters, valid UTF-8, without control
// characters or terminal escape sequences. A target can then not clear a terminal, recolour
// it, forge a line such as "Run 99: 200 created", or reorder text with bidi controls.
func Sanitize(s string) string { return SanitizeN(s, MaxTextLen) }

// SanitizeN is Sanitize with another bound on the length in characters (at least 1).
func SanitizeN(s string, maxLen int) string { return bound(clean(s), maxLen) }

// bound cuts s to maxLen runes, marking the cut with an ellipsis.
func bound(s string, maxLen int) string {
	maxLen = max(maxLen, 1)
	if utf8.RuneCountInString(s) <= maxLen {
		return s
	}
	n := 0
	for i := range s {
		if n == maxLen-1 {
			return strings.TrimRight(s[:i], " ") + "…"
		}
		n++
	}
	return s
}

// clean drops escape sequences and invisible controls and turns line breaks and tabs into
// single spaces, without bounding the length.
func clean(s string) string {
	var b strings.Builder
	b.Grow(min(len(s), 4096))
	pendingSpace := false
	emit := func(r rune) {
		if r == ' ' {
			pendingSpace = b.Len() > 0
			return
		}
		if pendingSpace {
			b.WriteByte(' ')
			pendingSpace = false
		}
		b.WriteRune(r)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			emit('\uFFFD') // raw 0x9b is CSI to an 8-bit terminal: never pass invalid bytes through
			i += max(size, 1)
			continue
		case r == 0x1b:
			i += escapeLen(s[i:])
			continue
		case r == 0x9b: // C1 CSI
			i += size + csiLen(s[i+size:])
			continue
		case r == 0x90 || r == 0x98 || r == 0x9d || r == 0x9e || r == 0x9f: // C1 DCS SOS OSC PM APC
			i += size + stringLen(s[i+size:])
			continue
		case unicode.IsSpace(r): // tabs, CR, LF, NEL, line and paragraph separators, NBSP
			emit(' ')
		case unicode.IsControl(r) || invisible(r):
			// dropped
		default:
			emit(r)
		}
		i += size
	}
	return b.String()
}

// invisible reports format characters that reorder or hide text: bidi controls ("Trojan
// Source"), zero-width spaces and joiners used to hide words, the byte-order mark, and tag
// characters. ZWJ and ZWNJ stay: scripts and emoji need them.
func invisible(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200b, r == 0x200e, r == 0x200f, r == 0x2060, r == 0xfeff:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r >= 0xe0000 && r <= 0xe007f:
		return true
	}
	return false
}

// escapeLen is the length of the escape sequence that starts s (s[0] is ESC).
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[':
		return 2 + csiLen(s[2:])
	case ']', 'P', 'X', '^', '_':
		return 2 + stringLen(s[2:])
	}
	// ESC, intermediates 0x20–0x2F, one final byte 0x30–0x7E (charset selection, resets, …)
	i := 1
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
		i++
	}
	return i
}

// csiLen is the length of a control sequence's parameters, intermediates and final byte. A
// byte that cannot belong to one ends it early, so a broken sequence swallows nothing else.
func csiLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x40 && c <= 0x7e:
			return i + 1
		case c >= 0x20 && c <= 0x3f:
		default:
			return i
		}
	}
	return len(s)
}

// stringLen is the length of an OSC/DCS/SOS/PM/APC string up to and including its terminator
// (BEL, ESC \ or C1 ST); an unterminated string runs to the end, as a terminal would read it.
func stringLen(s string) int {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == 0x07:
			return i + 1
		case s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\':
			return i + 2
		case strings.HasPrefix(s[i:], "\u009c"):
			return i + len("\u009c")
		}
	}
	return len(s)
}
