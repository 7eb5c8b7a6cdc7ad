package observability

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// query is what the checks need from one PromQL expression: the series it
// selects and the label names it groups or matches on. It is read by a small
// tokenizer, not a full PromQL parser: promtool checks the syntax; this only
// has to find the names.
type query struct {
	selectors  []selector
	grouping   []string // labels of by, on, ignoring, group_left, group_right, label_values
	aggregated bool     // an aggregation drops the labels not grouped by
	without    bool     // a without clause: which labels survive is not tracked
}

// selector is one instant or range vector selector.
type selector struct {
	metric   string
	matchers []matcher
	// calls are the functions and aggregations whose parentheses enclose
	// the selector, outermost first ("" for plain parentheses).
	calls []string
	// le: an aggregation enclosing it groups by le (or keeps it, without).
	le bool
}

// matcher is one label matcher of a selector: label op "value".
type matcher struct {
	label, op, value string
}

// aggregators are PromQL's aggregation operators; written with by or
// without before their parenthesis they are not followed by one.
var aggregators = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// keywords are the other identifiers that are not metric names.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// groupingClauses take a parenthesized list of label names.
var groupingClauses = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

type tokenKind int

const (
	tokIdent tokenKind = iota
	tokString
	tokNumber
	tokVar // a Grafana template variable outside a string, such as $limit
	tokPunct
)

type token struct {
	kind tokenKind
	text string
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || ('0' <= c && c <= '9') }

// lex splits expr into tokens. Range and subquery brackets ([5m],
// [$__rate_interval], [1h:1m]) and comments are dropped.
func lex(expr string) ([]token, error) {
	var toks []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			raw := expr[i : j+1]
			text := raw[1 : len(raw)-1]
			if c == '"' {
				var err error
				if text, err = strconv.Unquote(raw); err != nil {
					return nil, fmt.Errorf("string %s: %w", raw, err)
				}
			}
			toks = append(toks, token{tokString, text})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [ at offset %d", i)
			}
			i += j + 1
		case c == '$':
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				k := strings.IndexByte(expr[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unterminated ${ at offset %d", i)
				}
				j += k + 1
			} else {
				for j < len(expr) && isIdentChar(expr[j]) {
					j++
				}
			}
			toks = append(toks, token{tokVar, expr[i:j]})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdentChar(expr[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, expr[i:j]})
			i = j
		case '0' <= c && c <= '9' || c == '.':
			j := i
			for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == '.' ||
				((expr[j] == '+' || expr[j] == '-') && (expr[j-1] == 'e' || expr[j-1] == 'E'))) {
				j++
			}
			toks = append(toks, token{tokNumber, expr[i:j]})
			i = j
		default:
			if i+1 < len(expr) {
				if two := expr[i : i+2]; slices.Contains([]string{"=~", "!~", "!=", "==", ">=", "<="}, two) {
					toks = append(toks, token{tokPunct, two})
					i += 2
					continue
				}
			}
			if !strings.ContainsRune("(){},=+-*/%^<>@", rune(c)) {
				return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
			}
			toks = append(toks, token{tokPunct, string(c)})
			i++
		}
	}
	return toks, nil
}

// parser walks the tokens of one expression.
type parser struct {
	toks []token
	i    int
	q    query
	// open is the stack of open parentheses: the call each belongs to.
	open []call
	// next is the call whose "(" comes next: a function, or an
	// aggregation with its grouping clause read before its parenthesis.
	next call
	// closed is the call whose ")" was the last token, for a grouping
	// clause written after an aggregation's parentheses.
	closed *call
}

// call is a function or aggregation and, for an aggregation, whether it
// keeps the label le.
type call struct {
	name  string
	le    bool
	start int // the first of its selectors in query.selectors
}

// add records a selector with the calls enclosing it.
func (p *parser) add(sel selector) {
	for _, c := range p.open {
		sel.calls = append(sel.calls, c.name)
		sel.le = sel.le || c.le
	}
	p.q.selectors = append(p.q.selectors, sel)
}

func (p *parser) peek(k int) token {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return token{kind: tokPunct}
}

func (p *parser) isPunct(k int, text string) bool {
	t := p.peek(k)
	return t.kind == tokPunct && t.text == text
}

// parseQuery reads the selectors and grouping labels of expr. It fails on
// unbalanced parentheses and on selectors it cannot read.
func parseQuery(expr string) (query, error) {
	toks, err := lex(expr)
	if err != nil {
		return query{}, err
	}
	if len(toks) == 0 {
		return query{}, fmt.Errorf("empty expression")
	}
	p := &parser{toks: toks}
	depth := 0
	for ; p.i < len(p.toks); p.i++ {
		t := p.toks[p.i]
		closed := p.closed
		p.closed = nil
		if t.kind == tokIdent && (t.text == "by" || t.text == "without") {
			p.closed = closed
		}
		switch {
		case t.kind == tokPunct && t.text == "(":
			depth++
			p.next.start = len(p.q.selectors)
			p.open = append(p.open, p.next)
			p.next = call{}
		case t.kind == tokPunct && t.text == ")":
			if depth--; depth < 0 {
				return query{}, fmt.Errorf("unbalanced )")
			}
			c := p.open[len(p.open)-1]
			p.open = p.open[:len(p.open)-1]
			p.closed = &c
			continue
		case t.kind == tokPunct && t.text == "{":
			sel, err := p.selector("")
			if err != nil {
				return query{}, err
			}
			p.add(sel)
		case t.kind == tokPunct && t.text == "}":
			return query{}, fmt.Errorf("unbalanced }")
		case t.kind == tokIdent:
			if err := p.ident(t.text); err != nil {
				return query{}, err
			}
		}
	}
	if depth != 0 {
		return query{}, fmt.Errorf("unbalanced (")
	}
	return p.q, nil
}

// ident handles the identifier at p.i: a grouping clause, a function or
// operator, or a metric name starting a selector.
func (p *parser) ident(name string) error {
	lower := strings.ToLower(name)
	switch {
	case groupingClauses[lower] && p.isPunct(1, "("):
		p.i++
		labels, err := p.labelList()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p.q.grouping = append(p.q.grouping, labels...)
		if lower == "without" {
			p.q.without = true
		}
		if lower == "by" || lower == "without" {
			// The aggregation's own clause, before or after its
			// parentheses: by keeps le only if named, without unless.
			le := slices.Contains(labels, "le") == (lower == "by")
			if p.next.name != "" {
				p.next.le = le
			} else if p.closed != nil && aggregators[p.closed.name] && le {
				for i := p.closed.start; i < len(p.q.selectors); i++ {
					p.q.selectors[i].le = true
				}
			}
		}
	case aggregators[lower]:
		p.q.aggregated = true
		p.next = call{name: lower}
	case name == "label_values" && p.isPunct(1, "("):
		return p.labelValues()
	case p.isPunct(1, "("):
		p.next = call{name: lower} // a function
	case keywords[lower]:
		// An operator keyword.
	default:
		sel := selector{metric: name}
		if p.isPunct(1, "{") {
			p.i++
			var err error
			if sel, err = p.selector(name); err != nil {
				return err
			}
		}
		p.add(sel)
	}
	return nil
}

// labelList reads "(a, b, ...)" with p.i on the "(", leaving p.i on ")".
func (p *parser) labelList() ([]string, error) {
	var labels []string
	for p.i++; p.i < len(p.toks); p.i++ {
		t := p.toks[p.i]
		switch {
		case t.kind == tokPunct && t.text == ")":
			return labels, nil
		case t.kind == tokPunct && t.text == ",":
		case t.kind == tokIdent:
			labels = append(labels, t.text)
		default:
			return nil, fmt.Errorf("unexpected %q in a label list", t.text)
		}
	}
	return nil, fmt.Errorf("unterminated label list")
}

// selector reads the matchers of "{...}" with p.i on the "{", leaving p.i on
// "}".
func (p *parser) selector(metric string) (selector, error) {
	sel := selector{metric: metric}
	for p.i++; p.i < len(p.toks); p.i++ {
		t := p.toks[p.i]
		switch {
		case t.kind == tokPunct && t.text == "}":
			return sel, nil
		case t.kind == tokPunct && t.text == ",":
		case t.kind == tokIdent:
			op, val := p.peek(1), p.peek(2)
			if op.kind != tokPunct || !slices.Contains([]string{"=", "!=", "=~", "!~"}, op.text) || val.kind != tokString {
				return sel, fmt.Errorf("%s: cannot read the matcher of label %s", metric, t.text)
			}
			p.i += 2
			if t.text == "__name__" && op.text == "=" && sel.metric == "" {
				sel.metric = val.text
				continue
			}
			sel.matchers = append(sel.matchers, matcher{label: t.text, op: op.text, value: val.text})
		default:
			return sel, fmt.Errorf("%s: unexpected %q in a selector", metric, t.text)
		}
	}
	return sel, fmt.Errorf("%s: unterminated selector", metric)
}

// labelValues reads Grafana's label_values(label) or
// label_values(selector, label) with p.i on its name, leaving p.i on ")".
func (p *parser) labelValues() error {
	p.i += 2 // past "("
	if p.peek(0).kind == tokIdent && p.isPunct(1, ")") {
		p.q.grouping = append(p.q.grouping, p.peek(0).text)
		p.i++
		return nil
	}
	if p.peek(0).kind != tokIdent {
		return fmt.Errorf("label_values: want a metric name")
	}
	sel := selector{metric: p.peek(0).text}
	if p.isPunct(1, "{") {
		p.i++
		var err error
		if sel, err = p.selector(sel.metric); err != nil {
			return err
		}
	}
	p.q.selectors = append(p.q.selectors, sel)
	if !p.isPunct(1, ",") || p.peek(2).kind != tokIdent || !p.isPunct(3, ")") {
		return fmt.Errorf("label_values: want (metric, label)")
	}
	p.q.grouping = append(p.q.grouping, p.peek(2).text)
	p.i += 3
	return nil
}

func (q query) metrics() []string {
	var out []string
	for _, s := range q.selectors {
		if s.metric != "" && !slices.Contains(out, s.metric) {
			out = append(out, s.metric)
		}
	}
	return out
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		expr       string
		selectors  string // metric{label op value,...} joined by " "
		grouping   []string
		aggregated bool
		err        bool
	}{
		{expr: `up`, selectors: `up{}`},
		{
			expr:      `sum by (instance, le) (rate(a_bucket{instance=~"$g",x!="y z"}[$__rate_interval])) / ignoring(le) b`,
			selectors: `a_bucket{instance=~$g,x!=y z} b{}`, grouping: []string{"instance", "le", "le"}, aggregated: true,
		},
		{
			expr:      "histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le)) > 1e-3 and on() vector(0)",
			selectors: `h_bucket{}`, grouping: []string{"le"}, aggregated: true,
		},
		{expr: `topk(10, count_values("v", m offset 5m)) or absent(n{a='b'})`, selectors: `m{} n{a=b}`, aggregated: true},
		{expr: `x == bool Inf unless y @ start()`, selectors: `x{} y{}`},
		{expr: `a * on(w) group_left(r) b`, selectors: `a{} b{}`, grouping: []string{"w", "r"}},
		{expr: "a # a comment naming not_a_metric\n+ b", selectors: `a{} b{}`},
		{expr: `label_values(m{k="v"}, instance)`, selectors: `m{k=v}`, grouping: []string{"instance"}},
		{expr: `label_values(instance)`, selectors: ``, grouping: []string{"instance"}},
		{expr: `{__name__="m", a!~"b|c"}`, selectors: `m{a!~b|c}`},
		{expr: `{__name__=~"m.*"}`, selectors: `{__name__=~m.*}`},
		{expr: `sum(a`, err: true},
		{expr: `a)`, err: true},
		{expr: `a{b}`, err: true},
		{expr: `a{b="c"`, err: true},
		{expr: `a[5m`, err: true},
		{expr: `a{b="c}`, err: true},
		{expr: ``, err: true},
		{expr: `a ; b`, err: true},
		{expr: `label_values(m, a, b)`, err: true},
	}
	for _, tt := range tests {
		q, err := parseQuery(tt.expr)
		if tt.err {
			if err == nil {
				t.Errorf("parseQuery(%q) = %+v, want an error", tt.expr, q)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseQuery(%q): %v", tt.expr, err)
			continue
		}
		var sels []string
		for _, s := range q.selectors {
			var ms []string
			for _, m := range s.matchers {
				ms = append(ms, m.label+m.op+m.value)
			}
			sels = append(sels, s.metric+"{"+strings.Join(ms, ",")+"}")
		}
		if got := strings.Join(sels, " "); got != tt.selectors {
			t.Errorf("parseQuery(%q) selectors %s, want %s", tt.expr, got, tt.selectors)
		}
		if !slices.Equal(q.grouping, tt.grouping) {
			t.Errorf("parseQuery(%q) grouping %q, want %q", tt.expr, q.grouping, tt.grouping)
		}
		if q.aggregated != tt.aggregated {
			t.Errorf("parseQuery(%q) aggregated %v, want %v", tt.expr, q.aggregated, tt.aggregated)
		}
	}
}
