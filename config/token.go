package config

import "unicode/utf8"

// MinTokenLength is the fewest characters a bearer token this program accepts (the SCIM
// server's tokens, the admin token) should have: 32 random characters (openssl rand -hex 16
// gives 32, -hex 32 gives 64) cannot be guessed against a listener, a short word can.
const MinTokenLength = 32

// ShortToken reports whether tok is shorter than MinTokenLength characters, for the caller to
// warn at start-up (naming the token's key, never its value or length).
func ShortToken(tok string) bool { return utf8.RuneCountInString(tok) < MinTokenLength }
