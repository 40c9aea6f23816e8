package scimclient

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"plain", "userName is taken", "userName is taken"},
		{"newlines become one space", "a\r\nRun 99: 200 created\n\nb", "a Run 99: 200 created b"},
		{"tabs and runs of space", "a\t\t b   c", "a b c"},
		{"trimmed", "  a  ", "a"},
		{"CSI colour", "\x1b[1;31mred\x1b[0m text", "red text"},
		{"clear screen and home", "\x1b[2J\x1b[Hx", "x"},
		{"OSC title with BEL", "\x1b]0;pwned\x07after", "after"},
		{"OSC hyperlink with ST", "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"charset selection", "\x1b(Bx", "x"},
		{"lone ESC at the end", "x\x1b", "x"},
		{"C1 CSI", "\u009b31mx", "x"},
		{"C1 OSC", "\u009d0;t\u009cx", "x"},
		{"raw 0x9b byte", "a\x9b31mb", "a\uFFFD31mb"},
		{"NUL and BEL", "a\x00b\x07c", "abc"},
		{"DEL", "a\x7fb", "ab"},
		{"bidi override", "abc\u202edcb\u202c", "abcdcb"},
		{"zero width space", "ad\u200bmin", "admin"},
		{"line separator", "a\u2028b\u2029c\u0085d", "a b c d"},
		{"ZWJ emoji kept", "👩\u200d💻", "👩\u200d💻"},
		{"non-ASCII kept", "Jürgen Ødegård 山田", "Jürgen Ødegård 山田"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"broken CSI ends at a non-CSI byte", "\x1b[12\nabc", "abc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sanitize(tt.in); got != tt.want {
				t.Fatalf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSanitizeBounds(t *testing.T) {
	long := strings.Repeat("é", 1000)
	got := Sanitize(long)
	if n := utf8.RuneCountInString(got); n != MaxTextLen || !strings.HasSuffix(got, "…") {
		t.Fatalf("%d runes: %q", n, got)
	}
	if got := SanitizeN("abcdef", 4); got != "abc…" {
		t.Fatalf("%q", got)
	}
	if got := SanitizeN("abcdef", 0); got != "…" {
		t.Fatalf("%q", got)
	}
	if got := SanitizeN("abc", 3); got != "abc" {
		t.Fatalf("%q", got)
	}
}

// checkClean is what Sanitize promises about any input.
func checkClean(t *testing.T, in, out string, maxLen int) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("invalid UTF-8 from %q: %q", in, out)
	}
	if n := utf8.RuneCountInString(out); n > max(maxLen, 1) {
		t.Fatalf("%d runes > %d from %q", n, maxLen, in)
	}
	for _, r := range out {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || invisible(r) {
			t.Fatalf("control %U left in %q (from %q)", r, out, in)
		}
	}
	if strings.Contains(out, "  ") || strings.TrimSpace(out) != out {
		t.Fatalf("unclean spacing %q", out)
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"a\x1b[31mb", "\x1b]0;x\x07", "\u009b1m", "a\r\nb", "\xff\xfe", "\u202e", strings.Repeat("\x1b[", 1000)} {
		f.Add(s, 20)
	}
	f.Fuzz(func(t *testing.T, in string, maxLen int) {
		maxLen = maxLen%1000 + 1
		if maxLen < 1 {
			maxLen = -maxLen + 1
		}
		checkClean(t, in, SanitizeN(in, maxLen), maxLen)
		checkClean(t, in, Sanitize(in), MaxTextLen)
	})
}
