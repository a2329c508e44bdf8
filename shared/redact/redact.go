// Package redact hides what a URL may carry that is secret: the user
// information (a token in https://user:token@host) and the query (a
// registry's signed redirect, a token parameter). Every error or log line
// that may hold a URL goes through it; there is one copy of this logic.
package redact

import (
	"net/url"
	"strings"
)

// URLs hides the user information and the query of every URL in s.
func URLs(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		// The scheme is the letters before "://".
		start := i
		for start > 0 && isSchemeChar(s[start-1]) {
			start--
		}
		b.WriteString(s[:start])
		end := i + 3 + strings.IndexAny(s[i+3:], " \t\n\"'<>`,;")
		if end < i+3 {
			end = len(s)
		}
		b.WriteString(URL(s[start:end]))
		s = s[end:]
	}
}

// URL hides the user information and the query of one URL. Text that
// does not parse is cut at its host, so nothing after it can leak.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		scheme, rest, _ := strings.Cut(raw, "://")
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = "***@" + rest[at+1:]
		}
		if q := strings.IndexAny(rest, "?#"); q >= 0 {
			rest = rest[:q]
		}
		return scheme + "://" + rest
	}
	if u.User != nil {
		u.User = url.User("***")
	}
	if u.RawQuery != "" {
		u.RawQuery = ""
		u.ForceQuery = false
	}
	u.Fragment = ""
	return strings.Replace(u.String(), "%2A%2A%2A@", "***@", 1)
}

func isSchemeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'
}

// UserInfo hides only the user information of one URL: for a URL a person
// wrote in Git (a remote base), whose query is theirs to see.
func UserInfo(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	return raw
}
