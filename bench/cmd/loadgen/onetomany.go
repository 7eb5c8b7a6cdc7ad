package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/bench/loadgen"
)

// oneToManyPlan is what -mode fan1n runs: the room's set-up, then a phase
// at each room rate and each broadcast rate.
type oneToManyPlan struct {
	members               int
	roomRates, bcastRates string
	url, key              string
	warmup, dur           time.Duration
	logf                  func(string, ...any)
	emit                  func(loadgen.Result) error
}

func oneToMany(ctx context.Context, g *loadgen.Generator, p oneToManyPlan) error {
	if p.url == "" || p.key == "" {
		return errors.New("-mode fan1n needs -dispatch-url and -api-key (HANDLERS_API_KEY)")
	}
	room, err := parseRates(p.roomRates)
	if err != nil {
		return fmt.Errorf("-room-rates: %w", err)
	}
	bcast, err := parseRates(p.bcastRates)
	if err != nil {
		return fmt.Errorf("-broadcast-rates: %w", err)
	}
	took, n, err := g.Connect(ctx)
	if err != nil {
		return err
	}
	p.logf("opened %d sockets in %s", n, took.Round(time.Millisecond))
	if len(room) > 0 {
		t0 := time.Now()
		if err := g.JoinRoom(ctx, p.members, 2*time.Minute); err != nil {
			return err
		}
		p.logf("%d members joined room %s in %s", p.members, loadgen.OneToManyRoom, time.Since(t0).Round(time.Millisecond))
	}
	phase := func(r float64, broadcast bool) error {
		p.logf("1→N: %g dispatches/s, broadcast %v: %s warm-up, %s measured", r, broadcast, p.warmup, p.dur)
		res := g.OneToMany(ctx, p.members, loadgen.OneToManyOptions{
			DispatchURL: p.url, APIKey: p.key, Broadcast: broadcast, Rate: r,
			Warmup: p.warmup, Duration: p.dur, Senders: 8,
		})
		if err := p.emit(res); err != nil {
			return err
		}
		time.Sleep(time.Second) // the last phase's stragglers
		return ctx.Err()
	}
	for _, r := range room {
		if err := phase(r, false); err != nil {
			return err
		}
	}
	for _, r := range bcast {
		if err := phase(r, true); err != nil {
			return err
		}
	}
	return nil
}

// parseRates parses "10,15" into rates; "" is none.
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, r)
	}
	return out, nil
}
