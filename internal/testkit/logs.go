package testkit

import (
	"encoding/json"
	"strings"
)

// LogLine is one zap JSON line of a process under test, decoded.
type LogLine map[string]any

// LogLines decodes the JSON lines of logs, skipping any that are not JSON.
func LogLines(logs string) []LogLine {
	var out []LogLine
	for _, l := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m LogLine
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// CountLogs counts the lines of logs whose msg contains snippet and whose
// fields include every one of fields (compared as JSON numbers or strings).
func CountLogs(logs, snippet string, fields map[string]any) int {
	n := 0
next:
	for _, l := range LogLines(logs) {
		msg, _ := l["msg"].(string)
		if !strings.Contains(msg, snippet) {
			continue
		}
		for k, want := range fields {
			got, ok := l[k]
			if !ok {
				continue next
			}
			if w, isInt := want.(int); isInt {
				if f, isNum := got.(float64); !isNum || f != float64(w) {
					continue next
				}
			} else if got != want {
				continue next
			}
		}
		n++
	}
	return n
}
