package connid_test

import (
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard/switchboard/gateway/internal/connid"
)

var idPattern = regexp.MustCompile(`^[a-z2-7]{13}-[0-9a-z]+$`)

func TestNextUniqueAcrossGoroutines(t *testing.T) {
	const goroutines, each = 16, 5000
	g := connid.New()
	results := make([][]string, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, each)
			for j := range ids {
				ids[j] = g.Next()
			}
			results[i] = ids
		}()
	}
	wg.Wait()
	seen := make(map[string]bool, goroutines*each)
	for _, ids := range results {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("id %q handed out twice", id)
			}
			seen[id] = true
			if !idPattern.MatchString(id) {
				t.Fatalf("id %q does not match %s", id, idPattern)
			}
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct ids, want %d", len(seen), goroutines*each)
	}
}

func TestGeneratorsDoNotCollide(t *testing.T) {
	a, b := connid.New(), connid.New()
	prefix := func(id string) string { return id[:strings.IndexByte(id, '-')] }
	ida, idb := a.Next(), b.Next()
	if prefix(ida) == prefix(idb) {
		t.Fatalf("two generators share the prefix %q", prefix(ida))
	}
	seen := map[string]bool{ida: true, idb: true}
	for range 1000 {
		for _, g := range []*connid.Generator{a, b} {
			id := g.Next()
			if seen[id] {
				t.Fatalf("id %q handed out twice across generators", id)
			}
			seen[id] = true
		}
	}
	// The counter part restarts with every generator, so it is the prefix
	// alone that keeps ids apart.
	if strings.TrimPrefix(ida, prefix(ida)) != strings.TrimPrefix(idb, prefix(idb)) {
		t.Errorf("first ids %q and %q differ after the prefix; want the same counter", ida, idb)
	}
}

func TestPrefixIsStable(t *testing.T) {
	g := connid.New()
	first := g.Next()
	p := first[:strings.IndexByte(first, '-')+1]
	for range 100 {
		if id := g.Next(); !strings.HasPrefix(id, p) {
			t.Fatalf("id %q lost the prefix %q", id, p)
		}
	}
}
