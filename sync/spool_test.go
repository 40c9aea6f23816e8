package sync

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestDesiredSpoolRoundTrip writes past the in-memory part (so the temporary file is read too)
// and reads every user back, twice, as the planner's two passes do.
func TestDesiredSpoolRoundTrip(t *testing.T) {
	var s desiredSpool
	defer s.close()
	var want []spooledDesired
	for i := range 20000 {
		v := spooledDesired{D: Desired{ExternalID: fmt.Sprintf("id-%d", i), DN: fmt.Sprintf("uid=u%d,ou=People,dc=x", i),
			Active: i%3 != 0, Values: map[string]string{"userName": fmt.Sprintf("u%d", i), "title": strings.Repeat("é", i%40)}}}
		if i%2 == 0 {
			v.D.UUID = fmt.Sprintf("uuid-%d", i)
		}
		if i%5 == 0 {
			v.Entry = &entryRef{Attrs: map[string][]string{"objectClass": {"top", "person"}, "empty": {}}}
		}
		want = append(want, v)
		if err := s.add(v); err != nil {
			t.Fatal(err)
		}
	}
	if s.seg.file == nil {
		t.Fatal("the spool never reached its file: the test does not cover reading one")
	}
	for pass := range 2 {
		i := 0
		err := s.each(func(got spooledDesired) error {
			if !reflect.DeepEqual(got, want[i]) {
				return fmt.Errorf("pass %d, user %d: got %+v, want %+v", pass, i, got, want[i])
			}
			i++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if i != len(want) {
			t.Fatalf("pass %d read %d users, want %d", pass, i, len(want))
		}
	}
}

// FuzzDecodeDesired: a damaged record is an error, never a panic or a huge allocation, and
// whatever decodes encodes back to a record that decodes the same.
func FuzzDecodeDesired(f *testing.F) {
	f.Add(appendDesired(nil, spooledDesired{D: Desired{ExternalID: "a", DN: "uid=a", Values: map[string]string{"userName": "a"}}}))
	f.Add(appendDesired(nil, spooledDesired{D: Desired{Values: map[string]string{}}, Entry: &entryRef{Attrs: map[string][]string{"x": {"1", "2"}}}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeDesired(b)
		if err != nil {
			return
		}
		again, err := decodeDesired(appendDesired(nil, v))
		if err != nil || !reflect.DeepEqual(v, again) {
			t.Fatalf("%x decoded to %+v, which round-trips to %+v (%v)", b, v, again, err)
		}
	})
}

// TestDesiredSpoolDamagedRecords: a record cut short, or one claiming more than the bound, is
// an error naming the spool, never a short success.
func TestDesiredSpoolDamagedRecords(t *testing.T) {
	for name, tail := range map[string][]byte{
		"cut short":      {10, 1, 2},
		"over the bound": binary.AppendUvarint(nil, maxDesiredRecord+1),
	} {
		var s desiredSpool
		if err := s.add(spooledDesired{D: Desired{ExternalID: "a", Values: map[string]string{"userName": "a"}}}); err != nil {
			t.Fatal(err)
		}
		s.seg.buf.Write(tail)
		n := 0
		err := s.each(func(spooledDesired) error { n++; return nil })
		if err == nil || !strings.Contains(err.Error(), "desired spool") || n != 1 {
			t.Errorf("%s: %d read, %v", name, n, err)
		}
		s.close()
	}
}
