package contract

import "strings"

// Cut bounds a name written into a message to limit characters (code points), "..." added
// when cut, as the Python server does.
func Cut(s string, limit int) string {
	if r := []rune(s); len(r) > limit {
		return string(r[:limit]) + "..."
	}
	return s
}

// Quoted spells names as ['a', 'b'], as the Python server does.
func Quoted(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "'" + n + "'"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
