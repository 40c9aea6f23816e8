package sync

import "testing"

func TestIDKeyRoundTrip(t *testing.T) {
	for _, id := range []string{"", "00000000-0000-4000-8000-000000000042", "6b1f3c2a-0000-4000-8000-00000000000d",
		"6B1F3C2A-0000-4000-8000-00000000000D", "not-a-uuid", "0000000000-00-4000-8000-000000000042", "123"} {
		if got := keyOf(id).String(); got != id {
			t.Errorf("keyOf(%q).String() = %q", id, got)
		}
	}
	if keyOf("00000000-0000-4000-8000-000000000042").s != "" || keyOf("NOT").s != "NOT" {
		t.Error("UUIDs are not kept compact")
	}
}

func FuzzIDKey(f *testing.F) {
	f.Add("00000000-0000-4000-8000-000000000042")
	f.Add("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, id string) {
		if got := keyOf(id).String(); got != id {
			t.Fatalf("keyOf(%q).String() = %q", id, got)
		}
		if keyOf(id) != keyOf(keyOf(id).String()) {
			t.Fatal("not stable")
		}
	})
}
