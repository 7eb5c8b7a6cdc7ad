package observability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The files under test, relative to the repository root.
const (
	dashboardFile  = "docs/observability/grafana-dashboard.json"
	alertsFile     = "docs/observability/alerts.yaml"
	operationsFile = "docs/operations.md"
)

// datasourceUID is how every panel and query names the dashboard's
// datasource variable, so that the dashboard works on any Prometheus.
const datasourceUID = "${datasource}"

// dashboard is the part of Grafana's dashboard JSON model the checks read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	GridPos     gridPos        `json:"gridPos"`
	Datasource  *datasourceRef `json:"datasource"`
	Targets     []target       `json:"targets"`
	Collapsed   bool           `json:"collapsed"`
	Panels      []panel        `json:"panels"` // a collapsed row's panels
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	RefID        string         `json:"refId"`
	Datasource   *datasourceRef `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": "..."}
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// use is one PromQL expression of the files and where it is, with the
// label names its output is read by (legend templates, $labels in
// annotations).
type use struct {
	where  string
	expr   string
	labels []string
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", dir, err)
	}
	return dir
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	d, err := decodeDashboard(readFile(t, dashboardFile))
	if err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func decodeDashboard(data []byte) (dashboard, error) {
	var d dashboard
	err := json.Unmarshal(data, &d)
	return d, err
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	f, err := decodeRules(readFile(t, alertsFile))
	if err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return f
}

// decodeRules decodes a rule file, refusing keys Prometheus does not know
// (a misspelt "annotation:" would otherwise vanish).
func decodeRules(data []byte) (ruleFile, error) {
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&f)
	return f, err
}

// allPanels returns the panels with the panels of collapsed rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// uses returns every PromQL expression of the dashboard: the panels'
// targets and the template variables' queries.
func (d dashboard) uses() []use {
	var out []use
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			u := use{where: fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), expr: tg.Expr}
			for _, m := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
				u.labels = append(u.labels, m[1])
			}
			out = append(out, u)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		out = append(out, use{where: fmt.Sprintf("variable %s", v.Name), expr: v.queryText()})
		if v.Definition != "" {
			out = append(out, use{where: fmt.Sprintf("variable %s definition", v.Name), expr: v.Definition})
		}
	}
	return out
}

func (v variable) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

var annotationLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// uses returns every alert's expression, with the labels its annotations
// read.
func (f ruleFile) uses() []use {
	var out []use
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			u := use{where: fmt.Sprintf("alert %s", r.Alert), expr: r.Expr}
			for _, text := range r.Annotations {
				for _, m := range annotationLabel.FindAllStringSubmatch(text, -1) {
					u.labels = append(u.labels, m[1])
				}
			}
			out = append(out, u)
		}
	}
	return out
}

// markdownAnchors returns the anchors GitHub gives the headings of a
// Markdown document: lower case, punctuation dropped, spaces as hyphens.
func markdownAnchors(doc []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#"))) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				b.WriteRune(r)
			}
		}
		out[b.String()] = true
	}
	return out
}

func TestDashboardIsWellFormed(t *testing.T) {
	d := loadDashboard(t)
	for _, err := range checkDashboard(d) {
		t.Errorf("%s: %v", dashboardFile, err)
	}
	if len(d.allPanels()) < 20 {
		t.Errorf("%s has %d panels; did it lose its rows?", dashboardFile, len(d.allPanels()))
	}
}

func TestAlertRulesAreWellFormed(t *testing.T) {
	f := loadRules(t)
	for _, err := range checkRules(f, markdownAnchors(readFile(t, operationsFile))) {
		t.Errorf("%s: %v", alertsFile, err)
	}
	if len(f.uses()) < 10 {
		t.Errorf("%s has %d alerts; did it lose its groups?", alertsFile, len(f.uses()))
	}
}

// TestDashboardNamesExistingAlerts: the alerts a panel's description
// refers the operator to are in the rule file.
func TestDashboardNamesExistingAlerts(t *testing.T) {
	alerts := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
		}
	}
	named := regexp.MustCompile(`\bSwitchboard[A-Z][A-Za-z]+\b`)
	n := 0
	for _, p := range loadDashboard(t).allPanels() {
		for _, name := range named.FindAllString(p.Description, -1) {
			n++
			if !alerts[name] {
				t.Errorf("panel %d %q names alert %s, which %s does not have", p.ID, p.Title, name, alertsFile)
			}
		}
	}
	if n == 0 {
		t.Errorf("no panel description names an alert")
	}
}

// watched are counters that must be drawn on a panel and read by an
// alert: the uses of a secret being rotated out, which say when to finish
// a rotation (docs/operations.md, "Rotating the JWT secret" and "Rotating
// the dispatch API key"); a previous secret forgotten stays good. And
// failures that no request sees: presence leases Redis did not take, and
// lifecycle hooks that failed or were dropped, told at most once.
var watched = []string{
	"switchboard_gateway_auth_previous_secret_total",
	"switchboard_handlers_dispatch_api_previous_key_total",
	"switchboard_gateway_presence_write_failures_total",
	"switchboard_handlers_lifecycle_hooks_total",
}

// TestWatchedMetricsHavePanelsAndAlerts: each of watched is read by a
// dashboard panel and by an alert rule.
func TestWatchedMetricsHavePanelsAndAlerts(t *testing.T) {
	for _, f := range []struct {
		name string
		uses []use
	}{{dashboardFile, loadDashboard(t).uses()}, {alertsFile, loadRules(t).uses()}} {
		read := map[string]bool{}
		for _, u := range f.uses {
			q, err := parseQuery(u.expr)
			if err != nil {
				continue // TestDashboardIsWellFormed and TestAlertRulesAreWellFormed report it
			}
			for _, m := range q.metrics() {
				read[m] = true
			}
		}
		for _, m := range watched {
			if !read[m] {
				t.Errorf("%s: no query reads %s", f.name, m)
			}
		}
	}
}
