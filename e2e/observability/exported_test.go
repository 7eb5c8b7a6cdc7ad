package observability

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/testkit"
	"github.com/switchboard/switchboard/proto"
)

const wait = 10 * time.Second

// exported is what the services' /metrics pages hold: for each series name
// (a histogram as its _bucket, _sum and _count series, as PromQL reads it),
// its label names and their values. A name used with the wrong suffix, a
// counter read as _bucket, is not in it.
type exported map[string]map[string]map[string]bool

func exportedFrom(pages ...testkit.Samples) exported {
	ex := exported{}
	for _, name := range scrapeSeries {
		ex[name] = map[string]map[string]bool{}
	}
	for _, page := range pages {
		for _, s := range page {
			labels := ex[s.Name]
			if labels == nil {
				labels = map[string]map[string]bool{}
				ex[s.Name] = labels
			}
			for k, v := range s.Labels {
				if labels[k] == nil {
					labels[k] = map[string]bool{}
				}
				labels[k][v] = true
			}
		}
	}
	return ex
}

// targetLabels are the labels Prometheus adds to every series it scrapes;
// the services never export them.
var targetLabels = map[string]bool{"instance": true, "job": true}

// scrapeSeries are the series Prometheus itself records for each target,
// with only the target labels.
var scrapeSeries = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

// literalAlternatives is a regular expression that only lists values.
var literalAlternatives = regexp.MustCompile(`^[A-Za-z0-9_ :-]+(\|[A-Za-z0-9_ :-]+)*$`)

// check returns every name in u that the services do not export: metrics,
// labels matched or grouped by, label values matched, and the labels a
// legend or an annotation reads that the expression's result cannot have.
func (ex exported) check(u use) []error {
	q, err := parseQuery(u.expr)
	if err != nil {
		return []error{err}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	have := map[string]bool{} // the labels of the query's metrics
	for _, sel := range q.selectors {
		labels, ok := ex[sel.metric]
		switch {
		case sel.metric == "":
			bad("a selector without a metric name: %v", sel.matchers)
			continue
		case !ok:
			bad("metric %s is not exported by the gateway or handlers-svc", sel.metric)
			continue
		}
		for k := range labels {
			have[k] = true
		}
		for _, m := range sel.matchers {
			if err := ex.checkMatcher(sel.metric, m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, l := range q.grouping {
		if !targetLabels[l] && !have[l] {
			bad("groups by label %s, which none of %v has", l, q.metrics())
		}
	}
	if q.without {
		return errs
	}
	result := maps.Clone(have)
	maps.Copy(result, targetLabels)
	if q.aggregated {
		result = map[string]bool{}
		for _, l := range q.grouping {
			result[l] = true
		}
	}
	for _, l := range u.labels {
		if !result[l] {
			bad("reads label %s, which the result of %q does not have", l, u.expr)
		}
	}
	return errs
}

func (ex exported) checkMatcher(metric string, m matcher) error {
	if targetLabels[m.label] || (m.op == "=" && m.value == "") {
		return nil // added by Prometheus, or matches series without the label
	}
	values, ok := ex[metric][m.label]
	if !ok {
		return fmt.Errorf("%s has no label %s (it has %v)", metric, m.label, slices.Sorted(maps.Keys(ex[metric])))
	}
	if m.value == "" || strings.Contains(m.value, "$") {
		return nil // any value, or a Grafana variable
	}
	switch {
	case m.op == "=" || m.op == "!=":
		if !values[m.value] {
			return fmt.Errorf("%s{%s%s%q}: no series has that value (it has %v)", metric, m.label, m.op, m.value, slices.Sorted(maps.Keys(values)))
		}
	case literalAlternatives.MatchString(m.value):
		for _, v := range strings.Split(m.value, "|") {
			if !values[v] {
				return fmt.Errorf("%s{%s%s%q}: no series has the value %q (it has %v)", metric, m.label, m.op, m.value, v, slices.Sorted(maps.Keys(values)))
			}
		}
	default:
		re, err := regexp.Compile("^(?:" + m.value + ")$")
		if err != nil {
			return fmt.Errorf("%s{%s%s%q}: %v", metric, m.label, m.op, m.value, err)
		}
		if !slices.ContainsFunc(slices.Collect(maps.Keys(values)), re.MatchString) {
			return fmt.Errorf("%s{%s%s%q}: matches no exported value (%v)", metric, m.label, m.op, m.value, slices.Sorted(maps.Keys(values)))
		}
	}
	return nil
}

// TestQueriesUseExportedMetrics runs the real binaries, sends a message
// through them so that the series created on first use exist, and checks
// every query of the dashboard and the alert rules against both /metrics
// pages: the gateway supervisor's (every worker's series merged) and
// handlers-svc's.
func TestQueriesUseExportedMetrics(t *testing.T) {
	uses := append(loadDashboard(t).uses(), loadRules(t).uses()...)

	// The dispatch API on, so that its series (the previous key's uses
	// among them) are exported.
	s := testkit.StartStack(t, testkit.StackOptions{Workers: 2,
		HandlersEnv: []string{"HANDLERS_API_KEY=observability-test-key-0123456789"}})
	alice, bob := s.DialOn("alice", 0), s.DialOn("bob", 1)
	alice.Send("sendMessage", map[string]any{"to": "bob", "text": "hi"}, "m1")
	if f := alice.ExpectRef(wait, "m1"); f.Event != proto.EventAck {
		t.Fatalf("sendMessage got %+v, want an ack", f)
	}
	bob.ExpectEvent(wait, "message")
	var gw, hs testkit.Samples
	testkit.Eventually(t, wait, "both services count the message", func() bool {
		gw, hs = s.Metrics(), s.HandlersMetrics()
		return gw.Sum("switchboard_gateway_envelopes_received_total", "result", "ok") >= 1 &&
			gw.Sum("switchboard_gateway_deliveries_total") >= 1 &&
			hs.Sum("switchboard_handlers_requests_total", "event", "sendMessage", "result", "ok") >= 1
	})

	ex := exportedFrom(gw, hs)
	used := map[string]bool{}
	for _, u := range uses {
		for _, err := range ex.check(u) {
			t.Errorf("%s: %v", u.where, err)
		}
		if q, err := parseQuery(u.expr); err == nil {
			for _, m := range q.metrics() {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	if len(used) < 20 {
		t.Errorf("the files use %d metrics; did the queries go missing?", len(used))
	}
	var unused []string
	for name := range ex {
		if strings.HasPrefix(name, "switchboard_") && !strings.HasPrefix(name, "switchboard_gateway_supervisor_") &&
			!used[name] && !strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") && !strings.HasSuffix(name, "_bucket") {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	t.Logf("exported, shown on no panel and in no alert: %v", unused)
}

// TestCheckFlagsWhatIsNotExported: the check passes what a page exports and
// names each kind of mistake.
func TestCheckFlagsWhatIsNotExported(t *testing.T) {
	ex := exportedFrom(testkit.Samples{
		{Name: "a_total", Labels: map[string]string{"worker": "0", "reason": "store lost events"}},
		{Name: "a_total", Labels: map[string]string{"worker": "1", "reason": "expired"}},
		{Name: "h_bucket", Labels: map[string]string{"worker": "0", "le": "0.1"}},
		{Name: "h_count", Labels: map[string]string{"worker": "0"}},
		{Name: "g", Labels: map[string]string{}},
	})
	tests := []struct {
		expr   string
		labels []string
		want   string // a part of the one error, "" for none
	}{
		{expr: `sum by (instance, reason) (rate(a_total{reason="store lost events",instance=~"$gw"}[5m]))`, labels: []string{"reason"}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`},
		{expr: `a_total{reason=~"expired|store lost events"} / on(worker) h_count`, labels: []string{"worker", "instance"}},
		{expr: `a_total{reason=~"exp.*"} or g{worker=""}`},
		{expr: `count(g == 0) or vector(0)`},
		{expr: `up == 0 and on (instance, job) g`, labels: []string{"job"}},
		{expr: `up{worker="0"}`, want: "up has no label worker"},
		{expr: `rate(b_total[5m])`, want: "metric b_total is not exported"},
		{expr: `rate(g_bucket[5m])`, want: "metric g_bucket is not exported"},
		{expr: `a_total{outcome="x"}`, want: "has no label outcome"},
		{expr: `a_total{reason="store_lost"}`, want: `no series has that value`},
		{expr: `a_total{reason!="expird"}`, want: `no series has that value`},
		{expr: `a_total{reason=~"expired|store_lost"}`, want: `no series has the value "store_lost"`},
		{expr: `a_total{reason=~"x.*"}`, want: "matches no exported value"},
		{expr: `sum by (outcome) (a_total)`, want: "groups by label outcome"},
		{expr: `sum by (reason) (a_total)`, labels: []string{"worker"}, want: "reads label worker"},
		{expr: `sum(a_total)`, labels: []string{"instance"}, want: "reads label instance"},
		{expr: `g`, labels: []string{"reason"}, want: "reads label reason"},
		{expr: `{__name__=~"a.*"}`, want: "without a metric name"},
	}
	for _, tt := range tests {
		errs := ex.check(use{where: "test", expr: tt.expr, labels: tt.labels})
		switch {
		case tt.want == "" && len(errs) > 0:
			t.Errorf("check(%q) = %v, want no error", tt.expr, errs)
		case tt.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want)):
			t.Errorf("check(%q) = %v, want one error containing %q", tt.expr, errs, tt.want)
		}
	}
}
