package observability

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"text/template"
)

// checkDashboard returns what is wrong with the structure of d: what Grafana
// would refuse or show wrongly, and what would tie it to one Prometheus.
func checkDashboard(d dashboard) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if d.UID == "" || d.Title == "" {
		bad("no uid or title")
	}
	if d.SchemaVersion < 36 {
		bad("schemaVersion %d: want 36 (Grafana 9) or later", d.SchemaVersion)
	}
	hasDatasource := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.queryText() == "prometheus" {
			hasDatasource = true
		}
		if v.Datasource != nil && v.Datasource.UID != datasourceUID {
			bad("variable %s: datasource %q, want %q", v.Name, v.Datasource.UID, datasourceUID)
		}
	}
	if !hasDatasource {
		bad(`no variable "datasource" of type datasource for prometheus`)
	}
	ids := map[int]string{}
	var placed []panel
	for _, p := range d.allPanels() {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 {
			bad("%s: id must be positive", name)
		} else if other, dup := ids[p.ID]; dup {
			bad("%s: id %d already used by %q", name, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" {
			bad("%s: no title", name)
		}
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			bad("%s: gridPos %+v does not fit the 24-column grid", name, g)
		}
		if p.Type == "row" {
			if len(p.Targets) > 0 {
				bad("%s: a row has no queries", name)
			}
		} else {
			errs = append(errs, checkPanelQueries(name, p)...)
		}
		if p.Type == "row" || !rowCollapsed(d, p) {
			for _, q := range placed {
				if overlap(p.GridPos, q.GridPos) {
					bad("%s overlaps panel %d %q", name, q.ID, q.Title)
				}
			}
			placed = append(placed, p)
		}
	}
	return errs
}

func checkPanelQueries(name string, p panel) []error {
	var errs []error
	if p.Datasource == nil || p.Datasource.UID != datasourceUID || p.Datasource.Type != "prometheus" {
		errs = append(errs, fmt.Errorf("%s: datasource %+v, want prometheus %q", name, p.Datasource, datasourceUID))
	}
	if len(p.Targets) == 0 {
		errs = append(errs, fmt.Errorf("%s: no queries", name))
	}
	refs := map[string]bool{}
	for _, tg := range p.Targets {
		if tg.RefID == "" || refs[tg.RefID] {
			errs = append(errs, fmt.Errorf("%s: refId %q empty or repeated", name, tg.RefID))
		}
		refs[tg.RefID] = true
		if tg.Datasource != nil && tg.Datasource.UID != datasourceUID {
			errs = append(errs, fmt.Errorf("%s target %s: datasource %q, want %q", name, tg.RefID, tg.Datasource.UID, datasourceUID))
		}
		q, err := parseQuery(tg.Expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s target %s: %q: %v", name, tg.RefID, tg.Expr, err))
		}
		for _, err := range checkSemantics(q) {
			errs = append(errs, fmt.Errorf("%s target %s: %q: %v", name, tg.RefID, tg.Expr, err))
		}
	}
	return errs
}

// rowCollapsed reports whether p sits inside a collapsed row (its gridPos
// is then where it goes when the row opens).
func rowCollapsed(d dashboard, p panel) bool {
	for _, r := range d.Panels {
		for _, c := range r.Panels {
			if c.ID == p.ID {
				return r.Collapsed
			}
		}
	}
	return false
}

func overlap(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

// counterLike reports whether a series is a counter's, or a histogram's
// cumulative _bucket, _sum or _count, by the naming rules every metric of
// the services and of client_golang follows.
func counterLike(name string) bool {
	for _, suffix := range []string{"_total", "_bucket", "_sum", "_count"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// rateFuncs are the functions that turn a counter into something to read.
var rateFuncs = map[string]bool{"rate": true, "irate": true, "increase": true, "resets": true}

// checkSemantics returns what makes no sense in q, though Prometheus would
// run it: a counter read without rate or increase (its value is a count
// since some process started, and drops when it restarts), the rate of a
// gauge, and histogram_quantile over anything but the rates of _bucket
// series, aggregated keeping le.
func checkSemantics(q query) []error {
	var errs []error
	for _, sel := range q.selectors {
		if sel.metric == "" {
			continue
		}
		inRate, quantile, aggregated := false, false, false
		innermost := ""
		for _, c := range sel.calls {
			inRate = inRate || rateFuncs[c]
			aggregated = aggregated || (quantile && aggregators[c])
			quantile = quantile || c == "histogram_quantile"
			if c != "" {
				innermost = c
			}
		}
		switch counter := counterLike(sel.metric); {
		case counter && !inRate:
			errs = append(errs, fmt.Errorf("%s is a counter: read it through rate() or increase()", sel.metric))
		case !counter && rateFuncs[innermost]:
			errs = append(errs, fmt.Errorf("%s() of %s, which is no counter", innermost, sel.metric))
		}
		if quantile && !strings.HasSuffix(sel.metric, "_bucket") {
			errs = append(errs, fmt.Errorf("histogram_quantile over %s, not a histogram's _bucket series", sel.metric))
		}
		if quantile && aggregated && !sel.le {
			errs = append(errs, fmt.Errorf("histogram_quantile over %s aggregated without le: there are no buckets left", sel.metric))
		}
	}
	return errs
}

var (
	alertName    = regexp.MustCompile(`^Switchboard[A-Z][A-Za-z0-9]+$`)
	promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	severities   = map[string]bool{"critical": true, "warning": true, "info": true}
	runbookURL   = regexp.MustCompile(`^docs/operations\.md#([a-z0-9_-]+)$`)
)

// checkRules returns what is wrong with the rule file f; anchors are the
// sections of docs/operations.md a runbook_url may point at.
func checkRules(f ruleFile, anchors map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(f.Groups) == 0 {
		bad("no groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			bad("group %q: name empty or repeated", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			bad("group %s: no rules", g.Name)
		}
		for _, r := range g.Rules {
			name := "alert " + r.Alert
			if r.Record != "" || !alertName.MatchString(r.Alert) {
				bad("group %s: rule %q%s: want an alert named Switchboard<CamelCase>", g.Name, r.Alert, r.Record)
			}
			if alerts[r.Alert] {
				bad("%s: repeated", name)
			}
			alerts[r.Alert] = true
			q, err := parseQuery(r.Expr)
			if err != nil {
				bad("%s: expr %q: %v", name, r.Expr, err)
			}
			for _, err := range checkSemantics(q) {
				bad("%s: expr %q: %v", name, r.Expr, err)
			}
			if !promDuration.MatchString(r.For) {
				bad("%s: for %q: want a duration such as 5m (0m to fire at once)", name, r.For)
			}
			if !severities[r.Labels["severity"]] {
				bad("%s: labels.severity %q: want critical, warning or info", name, r.Labels["severity"])
			}
			for _, key := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					bad("%s: no annotations.%s", name, key)
				}
			}
			if m := runbookURL.FindStringSubmatch(r.Annotations["runbook_url"]); m == nil || !anchors[m[1]] {
				bad("%s: runbook_url %q: want docs/operations.md#<a heading of it>", name, r.Annotations["runbook_url"])
			}
			for key, text := range r.Annotations {
				if err := checkTemplate(text); err != nil {
					bad("%s: annotations.%s: %v", name, key, err)
				}
			}
		}
	}
	return errs
}

// templateFuncs are Prometheus's template functions that annotations use,
// as stand-ins that only have to run.
var templateFuncs = template.FuncMap{
	"humanize":           func(v any) string { return fmt.Sprint(v) },
	"humanize1024":       func(v any) string { return fmt.Sprint(v) },
	"humanizeDuration":   func(v any) string { return fmt.Sprint(v) },
	"humanizePercentage": func(v any) string { return fmt.Sprint(v) },
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
	"title":              func(s string) string { return s },
}

// checkTemplate parses and runs an annotation the way Prometheus does:
// with $labels, $value and $externalLabels defined first.
func checkTemplate(text string) error {
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	tmpl, err := template.New("annotation").Funcs(templateFuncs).Option("missingkey=zero").Parse(defs + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		ExternalURL            string
		Value                  float64
	}{Labels: map[string]string{}, ExternalLabels: map[string]string{}, Value: 0.5}
	return tmpl.Execute(&strings.Builder{}, data)
}

// TestChecksCatchBrokenFiles: each check fails on a file broken its way,
// and passes on a minimal good one, so the checks of the real files could
// fail.
func TestChecksCatchBrokenFiles(t *testing.T) {
	const goodDashboard = `{"uid":"u","title":"t","schemaVersion":39,
		"templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]},
		"panels":[
			{"id":1,"type":"row","title":"r","gridPos":{"h":1,"w":24,"x":0,"y":0}},
			{"id":2,"type":"timeseries","title":"p","gridPos":{"h":8,"w":12,"x":0,"y":1},
			 "datasource":{"type":"prometheus","uid":"${datasource}"},
			 "targets":[{"refId":"A","expr":"sum(m)"}]}]}`
	dashboards := []struct {
		name, from, to string
	}{
		{"good", "", ""},
		{"duplicate id", `{"id":2,`, `{"id":1,`},
		{"hard-coded datasource", `"uid":"${datasource}"}`, `"uid":"P1809F7CD0C75ACF3"}`},
		{"off the grid", `"w":12,"x":0`, `"w":12,"x":16`},
		{"overlapping", `"y":1}`, `"y":0}`},
		{"no datasource variable", `"name":"datasource"`, `"name":"ds"`},
		{"unbalanced query", `sum(m)`, `sum(m`},
		{"no queries", `[{"refId":"A","expr":"sum(m)"}]`, `[]`},
	}
	for _, tt := range dashboards {
		data := strings.Replace(goodDashboard, tt.from, tt.to, 1)
		if tt.from != "" && data == goodDashboard {
			t.Fatalf("%s: %q not in the dashboard", tt.name, tt.from)
		}
		d, err := decodeDashboard([]byte(data))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if errs := checkDashboard(d); (len(errs) == 0) != (tt.name == "good") {
			t.Errorf("dashboard %s: checkDashboard = %v", tt.name, errs)
		}
	}

	const goodRules = `groups:
  - name: g
    rules:
      - alert: SwitchboardThing
        expr: sum by (instance) (m) > 0
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.instance }} is {{ $value | humanize }}."
          description: Do this.
          runbook_url: docs/operations.md#metrics
`
	anchors := markdownAnchors([]byte("# Operating\n## Metrics\n### Overload, and Redis output buffers\n"))
	if !anchors["overload-and-redis-output-buffers"] {
		t.Errorf("markdownAnchors = %v, want overload-and-redis-output-buffers among them", anchors)
	}
	rules := []struct {
		name, from, to string
		decodeErr      bool
	}{
		{name: "good"},
		{name: "no for", from: "        for: 5m\n", to: ""},
		{name: "no severity", from: "severity: warning", to: "team: chat"},
		{name: "unknown severity", from: "severity: warning", to: "severity: page"},
		{name: "no summary", from: "summary:", to: "title:"},
		{name: "missing section", from: "#metrics", to: "#metric"},
		{name: "broken template", from: "{{ $value | humanize }}", to: "{{ $value | humanize }"},
		{name: "unbalanced expr", from: "(m) > 0", to: "(m > 0"},
		{name: "misspelt key", from: "annotations:", to: "annotation:", decodeErr: true},
	}
	for _, tt := range rules {
		data := strings.Replace(goodRules, tt.from, tt.to, 1)
		if tt.from != "" && data == goodRules {
			t.Fatalf("%s: %q not in the rules", tt.name, tt.from)
		}
		f, err := decodeRules([]byte(data))
		if tt.decodeErr {
			if err == nil {
				t.Errorf("rules %s: decoded without an error", tt.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if errs := checkRules(f, anchors); (len(errs) == 0) != (tt.name == "good") {
			t.Errorf("rules %s: checkRules = %v", tt.name, errs)
		}
	}
}

// TestSemanticsCatchMisuse: checkSemantics passes the ways the files read
// counters, gauges and histograms, and names each misuse.
func TestSemanticsCatchMisuse(t *testing.T) {
	good := []string{
		`sum by (instance) (rate(a_total[5m])) > 0`,
		`increase(a_total[15m]) > 2 and g == 0`,
		`histogram_quantile(0.99, sum by (instance, le) (rate(h_bucket[5m]))) > 1`,
		`histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le))`,
		`histogram_quantile(0.5, rate(h_bucket{x="y"}[5m]))`,
		`histogram_quantile(0.9, sum without (instance) (rate(h_bucket[5m])))`,
		`sum(increase(h_sum[1h])) / sum(increase(h_count[1h]))`,
		`max_over_time(g[1h]) or count(g == 0) or vector(0)`,
		`up == 0`,
	}
	for _, expr := range good {
		q, err := parseQuery(expr)
		if err != nil {
			t.Fatalf("parseQuery(%q): %v", expr, err)
		}
		if errs := checkSemantics(q); len(errs) > 0 {
			t.Errorf("checkSemantics(%q) = %v, want none", expr, errs)
		}
	}
	bad := map[string]string{
		`a_total > 0`:                 "is a counter",
		`sum by (instance) (a_total)`: "is a counter",
		`rate(g[5m]) > 0`:             "rate() of g",
		`sum(increase(g[10m]))`:       "increase() of g",
		`histogram_quantile(0.9, sum by (instance) (rate(h_bucket[5m])))`: "without le",
		`histogram_quantile(0.9, sum(rate(h_bucket[5m])) by (instance))`:  "without le",
		`histogram_quantile(0.9, sum without (le) (rate(h_bucket[5m])))`:  "without le",
		`histogram_quantile(0.9, sum by (le) (rate(h_sum[5m])))`:          "not a histogram's _bucket",
		`histogram_quantile(0.9, sum by (le) (h_bucket))`:                 "is a counter",
	}
	for expr, want := range bad {
		q, err := parseQuery(expr)
		if err != nil {
			t.Fatalf("parseQuery(%q): %v", expr, err)
		}
		errs := checkSemantics(q)
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), want) {
			t.Errorf("checkSemantics(%q) = %v, want an error saying %q", expr, errs, want)
		}
	}
}
