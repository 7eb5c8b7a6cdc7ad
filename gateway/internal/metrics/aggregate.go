package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard/switchboard/gateway/internal/config"
)

// DirEnv names the directory, made by the supervisor and handed to each
// worker in its environment, that holds the workers' metrics sockets; the
// config package reads it.
const DirEnv = config.MetricsDirEnv

// SocketPath returns where worker index serves its registry in dir.
func SocketPath(dir string, index int) string {
	return filepath.Join(dir, "worker-"+strconv.Itoa(index)+".sock")
}

// ScrapeTimeout bounds the read of one worker's registry.
const ScrapeTimeout = 3 * time.Second

// WorkerLabel is the label the supervisor adds to every worker series.
const WorkerLabel = "worker"

// scrapeAccept asks a worker for the delimited protobuf format, which needs
// no text parsing.
var scrapeAccept = string(expfmt.NewFormat(expfmt.TypeProtoDelim))

// Aggregator gathers the supervisor's own registry and every worker's.
type Aggregator struct {
	own     *prometheus.Registry
	workers []*http.Client
	up      *prometheus.GaugeVec

	// The merged families of the last scrape Handler served, reused until
	// cacheFor has passed; mu is held while the workers are read, so
	// scrapes that arrive meanwhile wait for that read and share it.
	cacheFor time.Duration
	mu       sync.Mutex
	cachedAt time.Time
	cached   []*dto.MetricFamily
}

// CacheFor makes Handler serve the families of its last read of the
// workers for d after it, and read them at most once at a time: however
// often /metrics is asked, the workers are read at most once per d, so
// scrapes cannot load them. 0 (the default) reads them on every scrape;
// concurrent scrapes still share one read. Call it before serving.
func (a *Aggregator) CacheFor(d time.Duration) { a.cacheFor = d }

// SupervisorPrefix prefixes the supervisor's own Go and process series
// (switchboard_gateway_supervisor_go_goroutines, ...), so that go_* and
// process_* stay the workers' alone, each with its worker label.
const SupervisorPrefix = namespace + "_supervisor_"

// NewAggregator returns an Aggregator over workers workers whose sockets are
// in dir. Its own registry holds switchboard_gateway_worker_up and the
// supervisor process's Go and process collectors (under SupervisorPrefix);
// add the supervisor's other series with Register.
func NewAggregator(dir string, workers int) *Aggregator {
	a := &Aggregator{own: prometheus.NewRegistry()}
	a.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "worker_up",
		Help: "1 when the supervisor read the worker's metrics on this scrape, else 0 (the worker is down or restarting).",
	}, []string{WorkerLabel})
	a.own.MustRegister(a.up)
	prometheus.WrapRegistererWithPrefix(SupervisorPrefix, a.own).MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for i := range workers {
		path := SocketPath(dir, i)
		var d net.Dialer
		a.workers = append(a.workers, &http.Client{
			Timeout: ScrapeTimeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return d.DialContext(ctx, "unix", path)
				},
				MaxIdleConns:       1,
				DisableCompression: true,
			},
		})
	}
	return a
}

// Workers returns the number of workers.
func (a *Aggregator) Workers() int { return len(a.workers) }

// Get sends GET path to worker index over its private socket.
func (a *Aggregator) Get(ctx context.Context, index int, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker"+path, nil)
	if err != nil {
		return nil, err
	}
	return a.workers[index].Do(req)
}

// Close drops the idle connections to the workers. Scrapes after Close
// still work, on new connections.
func (a *Aggregator) Close() {
	for _, c := range a.workers {
		c.CloseIdleConnections()
	}
}

// Register adds supervisor collectors.
func (a *Aggregator) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := a.own.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves the merged metrics in the Prometheus exposition formats.
// A worker that cannot be read is left out of that scrape (and its
// worker_up is 0); the others are still served. The workers are read
// within the request's context: a scraper that gives up stops the reads.
// A read is shared by the scrapes that arrive while it runs, and reused
// for CacheFor's duration.
func (a *Aggregator) Handler() http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return a.gatherCached(r.Context()) })
		promhttp.HandlerFor(g, opts).ServeHTTP(rw, r)
	})
}

// gatherCached returns the cached families while they are fresh (see
// CacheFor), else gathers and caches them. The families are shared by
// the scrapes that get them, which only read them.
func (a *Aggregator) gatherCached(ctx context.Context) ([]*dto.MetricFamily, error) {
	asked := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	// Fresh: within cacheFor, or read while this scrape waited for mu.
	if a.cached != nil && (time.Since(a.cachedAt) < a.cacheFor || !a.cachedAt.Before(asked)) {
		return a.cached, nil
	}
	fams, err := a.GatherContext(ctx)
	if err != nil || ctx.Err() != nil {
		// A read cut short by its scraper leaving is missing workers
		// that answer: not one to serve the next scrapes.
		return fams, err
	}
	a.cached, a.cachedAt = fams, time.Now()
	return fams, nil
}

// Gather is GatherContext without a deadline beyond ScrapeTimeout.
func (a *Aggregator) Gather() ([]*dto.MetricFamily, error) {
	return a.GatherContext(context.Background())
}

// GatherContext reads every worker in parallel, each within ScrapeTimeout
// and ctx, and returns their families, each series labelled with its
// worker, merged with the supervisor's own.
func (a *Aggregator) GatherContext(ctx context.Context) ([]*dto.MetricFamily, error) {
	per := make([][]*dto.MetricFamily, len(a.workers))
	var wg sync.WaitGroup
	for i, c := range a.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fams, err := scrape(ctx, c)
			if err != nil {
				a.up.WithLabelValues(strconv.Itoa(i)).Set(0)
				return
			}
			labelAll(fams, strconv.Itoa(i))
			per[i] = fams
			a.up.WithLabelValues(strconv.Itoa(i)).Set(1)
		}()
	}
	wg.Wait()
	var fams []*dto.MetricFamily
	for _, f := range per {
		fams = append(fams, f...)
	}
	workers := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil })
	return prometheus.Gatherers{a.own, workers}.Gather()
}

func scrape(ctx context.Context, c *http.Client) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", scrapeAccept)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("worker metrics: HTTP %d", resp.StatusCode)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var fams []*dto.MetricFamily
	for {
		f := &dto.MetricFamily{}
		if err := dec.Decode(f); err != nil {
			if errors.Is(err, io.EOF) {
				return fams, nil
			}
			return nil, fmt.Errorf("decode worker metrics: %w", err)
		}
		fams = append(fams, f)
	}
}

// labelAll adds worker=index to every series, keeping label pairs sorted by
// name; a series that already has a worker label keeps its own.
func labelAll(fams []*dto.MetricFamily, index string) {
	for _, f := range fams {
		for _, m := range f.Metric {
			if slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == WorkerLabel }) {
				continue
			}
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(WorkerLabel), Value: proto.String(index)})
			slices.SortFunc(m.Label, func(x, y *dto.LabelPair) int { return strings.Compare(x.GetName(), y.GetName()) })
		}
	}
}
