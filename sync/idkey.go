package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// idKey is an external or target id as a map key and record field. Canonical lower-case UUIDs
// (entryUUID, objectGUID, ipaUniqueID, most targets' ids) take 16 bytes and no allocation;
// anything else keeps its string. At 100,000 users the planner holds a few of these per user,
// so the difference is tens of megabytes.
type idKey struct {
	u [16]byte
	s string // set when the id is not a canonical lower-case UUID
}

func keyOf(id string) idKey {
	// the nil UUID keeps its string: as 16 zero bytes it would be the empty key, and String
	// would give "" back
	if u, ok := parseUUID(id); ok && u != ([16]byte{}) {
		return idKey{u: u}
	}
	return idKey{s: id}
}

// String gives the id back exactly as it was.
func (k idKey) String() string {
	if k.s != "" || k == (idKey{}) {
		return k.s
	}
	var b [36]byte
	hex.Encode(b[0:8], k.u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], k.u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], k.u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], k.u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], k.u[10:16])
	return string(b[:])
}

func (k idKey) empty() bool { return k == idKey{} }

// parseUUID accepts only the canonical lower-case form, so String reproduces the input.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i--
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
	}
	return u, j == 16
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// hashKey is a value hash (hashValues' hex) as a number, for records that hold many.
func hashKey(hex16 string) uint64 {
	n, err := strconv.ParseUint(hex16, 16, 64)
	if err != nil {
		return 0
	}
	return n
}

// dnDigest is a normalised DN as a 16-byte map key: a full read with groups keeps one per
// user to resolve members, and the digest costs less than half of the DN. Two DNs share a
// digest with a probability of about 2^-100 at 100,000 users.
type dnDigest [16]byte

func digestDN(dnKey string) dnDigest {
	sum := sha256.Sum256([]byte(dnKey))
	return dnDigest(sum[:16])
}
