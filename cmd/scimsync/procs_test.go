package main

import "testing"

func TestProcsFor(t *testing.T) {
	for _, c := range []struct {
		env     string
		current int
		want    int
	}{
		{"", 1, minProcs}, // a single CPU: raised
		{"", 2, 0},
		{"", 8, 0},
		{"1", 1, 0}, // the administrator asked for one
		{"4", 1, 0},
		{"0", 1, minProcs},    // the runtime ignores 0 …
		{"many", 1, minProcs}, // … and what is not a number
	} {
		if got := procsFor(c.env, c.current); got != c.want {
			t.Errorf("procsFor(%q, %d) = %d, want %d", c.env, c.current, got, c.want)
		}
	}
}
