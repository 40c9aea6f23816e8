package scimserver

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	gosync "sync"

	"go.uber.org/zap"
	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: the first recommendation of RFC 9106 §4 for memory-constrained
// machines (t=3, m=64 MiB) would let a few concurrent POSTs take hundreds of MiB, so this uses
// OWASP's minimum (m=19 MiB, t=2, p=1) and hashes one password at a time.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// passwords applies server.password to the passwords IdPs send: discard them (the default:
// scimsync authenticates nobody, so it has no use for them), or keep a salted argon2id hash.
// Never the plain text, never in a response, never filterable.
type passwords struct {
	mode    string
	log     *zap.Logger
	once    gosync.Once
	hashing gosync.Mutex // one hash at a time bounds the memory a burst of POSTs can take
}

// take removes every "password" key from attrs (a User body, or a no-path PATCH value) and
// returns the new hash to store: "" when discarding or when attrs had no password.
func (p *passwords) take(attrs map[string]any, who string) (hash string, found bool, err error) {
	var plain string
	for k, v := range attrs {
		if strings.EqualFold(k, "password") {
			delete(attrs, k)
			if s, ok := v.(string); ok {
				plain, found = s, true
			} else if v != nil {
				return "", false, fmt.Errorf("password must be a string")
			}
		}
	}
	if !found {
		return "", false, nil
	}
	if p.mode != PasswordHash {
		p.once.Do(func() {
			p.log.Info("a password sent by an identity provider was discarded; scimsync never stores passwords (server.password: discard)",
				zap.String("who", who))
		})
		return "", true, nil
	}
	if plain == "" {
		return "", true, nil
	}
	h, err := p.hash(plain)
	return h, true, err
}

func (p *passwords) hash(plain string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scim: password salt: %w", err)
	}
	p.hashing.Lock()
	key := argon2.IDKey([]byte(plain), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	p.hashing.Unlock()
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// verifyPassword checks plain against a PHC string written by hash; for tests and for whoever
// later uses the stored hashes.
func verifyPassword(phc, plain string) bool {
	var m, t uint32
	var par uint8
	var v int
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &par); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	got := argon2.IDKey([]byte(plain), salt, t, m, par, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
