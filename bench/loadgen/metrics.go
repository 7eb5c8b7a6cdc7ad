package loadgen

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var metricsClient = &http.Client{Timeout: 3 * time.Second}

// scrapeMetrics reads the gateway's Prometheus endpoint and returns the summed
// go_goroutines and switchboard_gateway_connections_open over every worker,
// or -1, -1 when there is no endpoint.
func scrapeMetrics(url string) (goroutines, open int) {
	if url == "" {
		return -1, -1
	}
	resp, err := metricsClient.Get(url)
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, -1
	}
	sums := SumMetrics(bufio.NewScanner(resp.Body), "go_goroutines", "switchboard_gateway_connections_open")
	return int(sums["go_goroutines"]), int(sums["switchboard_gateway_connections_open"])
}

// SumMetrics sums, per metric name, every sample of the given names in a
// Prometheus text exposition, whatever their labels.
func SumMetrics(s *bufio.Scanner, names ...string) map[string]float64 {
	out := make(map[string]float64, len(names))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for _, n := range names {
			rest, ok := strings.CutPrefix(line, n)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if i := strings.LastIndexByte(rest, '}'); i >= 0 {
				rest = rest[i+1:]
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				out[n] += v
			}
		}
	}
	return out
}
