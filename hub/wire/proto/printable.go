package proto

import (
	"fmt"
	"strings"
	"unicode"
)

// Printable makes text from the network safe to show on a terminal: control
// characters (which could move the cursor, recolour or retitle it) and
// direction overrides become visible escapes, and the lines after a newline
// are indented under the first.
func Printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString("\n    ")
		case r == '\t':
			b.WriteRune(r)
		case unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
