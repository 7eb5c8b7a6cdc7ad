package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The fan-out scenario (make bench-fanout) runs the load scenario on a
// gateway of many workers, once per FANOUT_MODE, and asks what each mode
// costs per dispatch: the bytes Redis writes, and the dispatches a worker
// reads only to find no local socket for them. A dispatch is one publish
// (PUBLISH or SPUBLISH, from a script or not), as Redis counts them in
// INFO commandstats; the gateway's probes of its subscriptions are
// publishes too, a few a second against thousands.

// The gateway's series the scenario reads, summed over the workers from
// the supervisor's merged /metrics.
const (
	MetricDispatches = "switchboard_gateway_dispatches_total"
	MetricUnrouted   = "switchboard_gateway_dispatches_unrouted_total"
	MetricWorkerUp   = "switchboard_gateway_worker_up"
)

// FanoutStats is what one load run cost the fan-out (Result.Fanout).
type FanoutStats struct {
	Workers int `json:"workers"` // workers up, from the supervisor's worker_up
	// Publishes are the dispatches: PUBLISH and SPUBLISH calls in Redis.
	Publishes     int64 `json:"publishes"`
	RedisOutBytes int64 `json:"redis_out_bytes"` // INFO stats total_net_output_bytes
	// BytesPerDispatch is RedisOutBytes / Publishes.
	BytesPerDispatch float64 `json:"redis_out_bytes_per_dispatch"`
	// Received is the dispatches the workers read, summed over them;
	// Unrouted the part of them with no local recipient.
	Received int64 `json:"received"`
	Unrouted int64 `json:"unrouted"`
	// UnroutedShare is Unrouted / Received.
	UnroutedShare float64 `json:"unrouted_share"`
	// ReceivedPerDispatch is Received / Publishes: how many workers read
	// each dispatch, W in shared mode.
	ReceivedPerDispatch float64 `json:"received_per_dispatch"`
}

// FanoutSample is one reading of the counters FanoutStats is the
// difference of.
type FanoutSample struct {
	Redis    RedisTraffic
	Workers  int
	Received int64
	Unrouted int64
}

// FanoutDiff returns what happened between two samples.
func FanoutDiff(a, b FanoutSample) FanoutStats {
	st := FanoutStats{
		Workers:       b.Workers,
		Publishes:     b.Redis.Publishes - a.Redis.Publishes,
		RedisOutBytes: b.Redis.OutputBytes - a.Redis.OutputBytes,
		Received:      b.Received - a.Received,
		Unrouted:      b.Unrouted - a.Unrouted,
	}
	if st.Publishes > 0 {
		st.BytesPerDispatch = float64(st.RedisOutBytes) / float64(st.Publishes)
		st.ReceivedPerDispatch = float64(st.Received) / float64(st.Publishes)
	}
	if st.Received > 0 {
		st.UnroutedShare = float64(st.Unrouted) / float64(st.Received)
	}
	return st
}

// SampleFanout reads Redis's traffic counters at redisAddr and the
// gateway's dispatch counters at metricsURL.
func SampleFanout(redisAddr, metricsURL string) (FanoutSample, error) {
	tr, err := ReadRedisTraffic(redisAddr)
	if err != nil {
		return FanoutSample{}, err
	}
	resp, err := metricsClient.Get(metricsURL)
	if err != nil {
		return FanoutSample{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return FanoutSample{}, fmt.Errorf("metrics: %s", resp.Status)
	}
	sums := SumMetrics(bufio.NewScanner(resp.Body), MetricDispatches, MetricUnrouted, MetricWorkerUp)
	return FanoutSample{
		Redis: tr, Workers: int(sums[MetricWorkerUp]),
		Received: int64(sums[MetricDispatches]), Unrouted: int64(sums[MetricUnrouted]),
	}, nil
}

// RedisTraffic is what Redis has written to its clients and how many
// messages were published, since it started.
type RedisTraffic struct {
	OutputBytes int64 // INFO stats: total_net_output_bytes
	Publishes   int64 // INFO commandstats: calls of publish and spublish
}

// ReadRedisTraffic asks the Redis at addr for INFO stats and INFO
// commandstats.
func ReadRedisTraffic(addr string) (RedisTraffic, error) {
	c, err := net.DialTimeout("tcp", addr, redisTimeout)
	if err != nil {
		return RedisTraffic{}, fmt.Errorf("redis %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(redisTimeout))
	cmd := "*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n"
	if _, err := io.WriteString(c, cmd); err != nil {
		return RedisTraffic{}, fmt.Errorf("redis %s: %w", addr, err)
	}
	br := bufio.NewReader(c)
	stats, err := readBulk(br)
	if err != nil {
		return RedisTraffic{}, fmt.Errorf("redis %s: INFO stats: %w", addr, err)
	}
	cs, err := readBulk(br)
	if err != nil {
		return RedisTraffic{}, fmt.Errorf("redis %s: INFO commandstats: %w", addr, err)
	}
	return ParseRedisTraffic(stats + cs)
}

// ParseRedisTraffic reads total_net_output_bytes (required) and the calls
// of cmdstat_publish and cmdstat_spublish (absent: none yet) from INFO
// text.
func ParseRedisTraffic(info string) (RedisTraffic, error) {
	var tr RedisTraffic
	found := false
	for line := range strings.Lines(info) {
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return tr, fmt.Errorf("total_net_output_bytes %q", v)
			}
			tr.OutputBytes, found = n, true
			continue
		}
		name, fields, ok := strings.Cut(line, ":")
		if !ok || (name != "cmdstat_publish" && name != "cmdstat_spublish") {
			continue
		}
		calls := false
		for _, f := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return tr, fmt.Errorf("%s calls %q", name, v)
				}
				tr.Publishes += n
				calls = true
			}
		}
		if !calls {
			return tr, fmt.Errorf("%s: no calls", name)
		}
	}
	if !found {
		return tr, errors.New("no total_net_output_bytes in INFO")
	}
	return tr, nil
}
