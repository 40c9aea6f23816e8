package config

import (
	"net"
	"strings"
	"unicode/utf8"
)

// MinTokenLength is the fewest characters a bearer token this program accepts (the SCIM
// server's tokens, the admin token) should have: 32 random characters (openssl rand -hex 16
// gives 32, -hex 32 gives 64) cannot be guessed against a listener, a short word can.
const MinTokenLength = 32

// ShortToken reports whether tok is shorter than MinTokenLength characters, for the caller to
// warn at start-up (naming the token's key, never its value or length).
func ShortToken(tok string) bool { return utf8.RuneCountInString(tok) < MinTokenLength }

// LoopbackHost reports whether host (a name or an IP address, in brackets or not) is this
// machine only: "localhost" or a loopback address. An empty host (listen on every address)
// is not.
func LoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
