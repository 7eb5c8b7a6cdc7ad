package main

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// Point is one load run of a chart: the offered rate (sends/s) and the p99
// of its deliveries.
type Point struct {
	Rate, P99 float64
	Pass      bool
}

// Series is one run's load points, in rate order.
type Series struct {
	Run, Date, Commit, Shape string // Shape: "1000x2, 2 workers"
	Points                   []Point
}

// SeriesOf groups the load rows of scenario by run, in the order the runs
// first appear, and returns at most last of them: the newest last.
func SeriesOf(rows []Row, scenario string, last int) []Series {
	var out []Series
	index := map[string]int{}
	for _, r := range rows {
		if r["scenario"] != scenario || r["mode"] != "load" || (r["stack"] != "" && r["stack"] != "candidate") {
			continue // the chart is of the code measured, not of an A/B run's baseline
		}
		rate, ok1 := r.Float("rate")
		p99, ok2 := r.Float("p99_ms")
		if !ok1 || !ok2 || rate <= 0 || p99 <= 0 {
			continue
		}
		i, seen := index[r["run"]]
		if !seen {
			i = len(out)
			index[r["run"]] = i
			shape := r["users"] + "x" + r["devices"]
			if r["workers"] != "" {
				shape += ", " + r["workers"] + " workers"
			}
			out = append(out, Series{Run: r["run"], Date: r["date"], Commit: r["commit"], Shape: shape})
		}
		out[i].Points = append(out[i].Points, Point{Rate: rate, P99: p99, Pass: r["pass"] != "no"})
	}
	for i := range out {
		slices.SortStableFunc(out[i].Points, func(a, b Point) int { return cmp.Compare(a.Rate, b.Rate) })
		out[i].Points = mergeRates(out[i].Points)
	}
	if last > 0 && len(out) > last {
		out = out[len(out)-last:]
	}
	return out
}

// mergeRates makes one point of the runs at one rate (an A/B run repeats
// each rate): the median p99, passing only if every run passed. points are
// in rate order.
func mergeRates(points []Point) []Point {
	var out []Point
	for i := 0; i < len(points); {
		j := i
		var p99s []float64
		pass := true
		for ; j < len(points) && points[j].Rate == points[i].Rate; j++ {
			p99s = append(p99s, points[j].P99)
			pass = pass && points[j].Pass
		}
		slices.Sort(p99s)
		mid := p99s[len(p99s)/2]
		if len(p99s)%2 == 0 {
			mid = (p99s[len(p99s)/2-1] + mid) / 2
		}
		out = append(out, Point{Rate: points[i].Rate, P99: mid, Pass: pass})
		i = j
	}
	return out
}

// The chart's geometry, in SVG user units.
const (
	width, height                = 760, 440
	left, right, top, bottom     = 70, 24, 58, 56
	plotW, plotH                 = width - left - right, height - top - bottom
	saturationP99                = 50 // ms: the saturation search's bound
	latestColor, previousColor   = "#1f5fbf", "#7a8aa3"
	thresholdColor, gridColor    = "#c0392b", "#e3e6ea"
	fontFamily                   = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
	pointRadius, previousOpacity = 3.5, 0.35
)

// Draw writes the chart of series as SVG: p99 on a log scale against the
// offered rate, the last series in full colour with a mark per point
// (hollow where the run failed: p99 over 50 ms, something missing, or
// errors), the others faint behind it, and the 50 ms line the saturation
// search uses. Each point of the last series carries data-rate and
// data-p99 attributes and a tooltip.
func Draw(w io.Writer, series []Series) error {
	if len(series) == 0 || len(series[len(series)-1].Points) == 0 {
		return fmt.Errorf("no load runs to draw")
	}
	latest := series[len(series)-1]
	maxRate, minP99, maxP99 := 0.0, math.Inf(1), float64(saturationP99)
	for _, s := range series {
		for _, p := range s.Points {
			maxRate = max(maxRate, p.Rate)
			minP99 = min(minP99, p.P99)
			maxP99 = max(maxP99, p.P99)
		}
	}
	xStep := niceStep(maxRate / 6)
	xMax := math.Ceil(maxRate/xStep) * xStep
	yLo := math.Floor(math.Log10(minP99))
	yHi := math.Ceil(math.Log10(maxP99))
	if yHi == yLo {
		yHi++
	}
	x := func(rate float64) float64 { return left + rate/xMax*plotW }
	y := func(ms float64) float64 { return top + plotH - (math.Log10(ms)-yLo)/(yHi-yLo)*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="12">`+"\n",
		width, height, width, height, fontFamily)
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")
	title := "p99 delivery latency against send rate (make bench)"
	sub := fmt.Sprintf("run %s", latest.Run)
	if latest.Commit != "" {
		sub += ", commit " + latest.Commit
	}
	sub += fmt.Sprintf("; U x D = %s", latest.Shape)
	if n := len(series) - 1; n > 0 {
		sub += fmt.Sprintf("; faint: the %d runs before", n)
	}
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="600">%s</text>`+"\n", left, esc(title))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555555">%s</text>`+"\n", left, esc(sub))

	// Grid and axes.
	b.WriteString(`<g class="grid" stroke="` + gridColor + `" stroke-width="1">` + "\n")
	for r := 0.0; r <= xMax+xStep/2; r += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", x(r), top, x(r), top+plotH)
	}
	yTicks := logTicks(yLo, yHi)
	for _, t := range yTicks {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`+"\n", left, y(t), left+plotW, y(t))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444444"/>`+"\n", left, top, plotW, plotH)
	b.WriteString(`<g class="ticks" fill="#333333">` + "\n")
	for r := 0.0; r <= xMax+xStep/2; r += xStep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(r), top+plotH+18, thousands(r))
	}
	for _, t := range yTicks {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-8, y(t), msLabel(t))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">offered rate R (sends/s)</text>`+"\n", left+plotW/2, height-14)
	fmt.Fprintf(&b, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">p99 latency (ms, log scale)</text>`+"\n", top+plotH/2)

	// The saturation bound.
	fmt.Fprintf(&b, `<line class="threshold" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/>`+"\n",
		left, y(saturationP99), left+plotW, y(saturationP99), thresholdColor)
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="%s">p99 = 50 ms: the saturation search's bound</text>`+"\n",
		left+8, y(saturationP99)-6, thresholdColor)

	// Earlier runs, faint, then the latest on top.
	for _, s := range series[:len(series)-1] {
		fmt.Fprintf(&b, `<g class="previous" data-run="%s" stroke="%s" fill="%s" opacity="%.2f">`+"\n",
			esc(s.Run), previousColor, previousColor, previousOpacity)
		writePolyline(&b, s.Points, x, y)
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2"/>`+"\n", x(p.Rate), y(p.P99))
		}
		b.WriteString("</g>\n")
	}
	fmt.Fprintf(&b, `<g class="latest" data-run="%s" stroke="%s">`+"\n", esc(latest.Run), latestColor)
	writePolyline(&b, latest.Points, x, y)
	for _, p := range latest.Points {
		fill := latestColor
		if !p.Pass {
			fill = "#ffffff"
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" stroke-width="1.5" data-rate="%s" data-p99="%s"><title>R = %s: p99 %s ms%s</title></circle>`+"\n",
			x(p.Rate), y(p.P99), pointRadius, fill, num(p.Rate, 0), trim(p.P99), thousands(p.Rate), trim(p.P99), map[bool]string{true: "", false: " (failed)"}[p.Pass])
	}
	b.WriteString("</g>\n")

	// Legend.
	lx, ly := left+12, top+16
	fmt.Fprintf(&b, `<g class="legend"><circle cx="%d" cy="%d" r="%.1f" fill="%s"/><text x="%d" y="%d" dominant-baseline="middle">latest run, %s</text>`,
		lx, ly, pointRadius, latestColor, lx+10, ly, esc(latest.Date))
	fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="%.1f" fill="#ffffff" stroke="%s" stroke-width="1.5"/><text x="%d" y="%d" dominant-baseline="middle">failed: p99 over 50 ms, missing or errors</text></g>`+"\n",
		lx, ly+18, pointRadius, latestColor, lx+10, ly+18)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writePolyline(b *strings.Builder, pts []Point, x, y func(float64) float64) {
	if len(pts) < 2 {
		return
	}
	b.WriteString(`<polyline fill="none" stroke-width="2" points="`)
	for i, p := range pts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(b, "%.1f,%.1f", x(p.Rate), y(p.P99))
	}
	b.WriteString(`"/>` + "\n")
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// logTicks returns 1, 2 and 5 times each power of ten from 10^lo to 10^hi.
func logTicks(lo, hi float64) []float64 {
	var ticks []float64
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			if t := m * math.Pow(10, e); math.Log10(t) <= hi+1e-9 {
				ticks = append(ticks, t)
			}
		}
	}
	return ticks
}

func msLabel(ms float64) string {
	if ms >= 1000 {
		return trim(ms/1000) + " s"
	}
	return trim(ms)
}

// trim formats f with at most 3 decimals and no trailing zeros.
func trim(f float64) string {
	s := num(f, 3)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// thousands formats a whole number with comma separators: 12,500.
func thousands(f float64) string {
	s := num(math.Round(f), 0)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func esc(s string) string { return html.EscapeString(s) }
