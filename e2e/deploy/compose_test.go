package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard/switchboard/internal/redisconn"
	"github.com/switchboard/switchboard/internal/serverurl"
	"github.com/switchboard/switchboard/internal/testkit"
)

// The profile that runs more than one of everything.
const multiProfile = "multi"

// The profile that runs a Redis Cluster, and a gateway and a handlers-svc
// on it.
const clusterProfile = "cluster"

// clusterNodes are the Redis Cluster's node services.
var clusterNodes = []string{"redis-c1", "redis-c2", "redis-c3"}

type composeFile struct {
	Services map[string]service `yaml:"services"`
}

type service struct {
	Image      string `yaml:"image"`
	PullPolicy string `yaml:"pull_policy"`
	Build      *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Profiles        []string `yaml:"profiles"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
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

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(t), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

// kind tells which binary a service runs: "gateway", "handlers-svc", or ""
// for a service from a public image (NATS, Redis). A service that runs the
// image another one builds is of that one's kind.
func (c composeFile) kind(s service) string {
	if s.Build != nil {
		return filepath.Dir(s.Build.Dockerfile)
	}
	for _, b := range c.Services {
		if b.Build != nil && b.Image != "" && b.Image == s.Image {
			return filepath.Dir(b.Build.Dockerfile)
		}
	}
	return ""
}

// gatewayReads reports whether the gateway reads an environment variable
// as one of its settings, asking the real binary: each setting NAME has
// the flag -name (lower case, dashes), and the gateway refuses a flag it
// does not define. "-h" after the flag stops it there, before it starts,
// with the usage.
func gatewayReads(t *testing.T) func(env string) bool {
	t.Helper()
	bin, _ := testkit.Binaries(t)
	known := map[string]bool{}
	return func(env string) bool {
		if r, ok := known[env]; ok {
			return r
		}
		flag := "-" + strings.ReplaceAll(strings.ToLower(env), "_", "-")
		cmd := exec.Command(bin, flag+"=x", "-h")
		cmd.Env = []string{} // none of the test's own GATEWAY_* settings
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "usage: gateway") && !strings.Contains(string(out), "invalid") &&
			!strings.Contains(string(out), "not defined") {
			t.Fatalf("gateway %s=x -h: neither refused nor stopped for help:\n%s", flag, out)
		}
		known[env] = !strings.Contains(string(out), "flag provided but not defined")
		return known[env]
	}
}

// TestGatewayReads: the probe tells a setting of each kind (string, int,
// bool, duration) from a variable the gateway does not read.
func TestGatewayReads(t *testing.T) {
	reads := gatewayReads(t)
	for _, env := range []string{"GATEWAY_ADDR", "GATEWAY_WORKERS", "GATEWAY_DEV", "GATEWAY_HANDLER_TIMEOUT", "NATS_URL"} {
		if !reads(env) {
			t.Errorf("the gateway does not read %s, says the probe", env)
		}
	}
	for _, env := range []string{"GATEWAY_NO_SUCH_SETTING", "HANDLERS_ADDR"} {
		if reads(env) {
			t.Errorf("the gateway reads %s, says the probe", env)
		}
	}
}

// handlersEnv is every variable handlers-svc reads, from the real binary's
// usage ("(env NAME)" after each flag).
func handlersEnv(t *testing.T) map[string]bool {
	t.Helper()
	_, bin := testkit.Binaries(t)
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("handlers-svc -h: %v\n%s", err, out)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if !names["HANDLERS_ADDR"] || !names["NATS_URL"] {
		t.Fatalf("handlers-svc -h names no HANDLERS_ADDR or NATS_URL:\n%s", out)
	}
	return names
}

// defaults returns s with each ${NAME:-default} replaced by its default,
// as compose reads it with none of the variables set.
func defaults(s string) string {
	return regexp.MustCompile(`\$\{[A-Z0-9_]+:-([^}]*)\}`).ReplaceAllString(s, "$1")
}

// imageTagged reports whether an image reference names a tag other than
// latest, or a digest.
func imageTagged(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash {
		return false // no tag: latest
	}
	tag := ref[colon+1:]
	return tag != "" && tag != "latest" && !strings.Contains(tag, "$")
}

// containerPorts returns the container ports a service publishes, and the
// host ports it takes. Every port must be published on the loopback
// address only (127.0.0.1:HOST:CONTAINER): the stack's defaults are for one
// machine, and NATS, Redis and the admin ports have no auth.
func containerPorts(t *testing.T, name string, s service) (container, host []string) {
	t.Helper()
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if len(parts) != 3 {
			t.Errorf("%s: port %q, want 127.0.0.1:HOST:CONTAINER", name, p)
			continue
		}
		if parts[0] != "127.0.0.1" {
			t.Errorf("%s: port %q is published on %q, want 127.0.0.1 only", name, p, parts[0])
		}
		host = append(host, parts[1])
		container = append(container, parts[2])
	}
	return container, host
}

func portOf(t *testing.T, name, env, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s: %s=%q is not host:port", name, env, addr)
	}
	return port
}

// TestComposeServices checks compose.yaml: the four services, health
// checks everywhere, start order on healthy dependencies, the environment,
// the published ports (on loopback only), safe defaults, each image built
// once, and image tags.
func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	handlers := handlersEnv(t)
	readers := map[string]func(string) bool{"gateway": gatewayReads(t), "handlers-svc": func(env string) bool { return handlers[env] }}
	for _, name := range []string{"nats", "redis", "gateway", "handlers-svc"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("compose.yaml has no %s service", name)
		}
	}
	if p := c.Services["gateway"].Ports; !slices.Contains(p, "127.0.0.1:7999:7999") {
		t.Errorf("the gateway publishes %v, want 127.0.0.1:7999:7999", p)
	}
	built := map[string]string{} // Dockerfile -> the service that builds it

	hostPorts := map[string]string{}
	for name, s := range c.Services {
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] == "NONE" {
			t.Errorf("%s: no health check", name)
		}
		if s.Image != "" && !imageTagged(s.Image) {
			t.Errorf("%s: image %q has no fixed tag (latest is not one)", name, s.Image)
		}
		container, host := containerPorts(t, name, s)
		for _, h := range host {
			if other, dup := hostPorts[h]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, h)
			}
			hostPorts[h] = name
		}

		kind := c.kind(s)
		if kind == "" {
			if s.Image == "" {
				t.Errorf("%s: neither an image nor a build", name)
			}
			continue
		}
		if s.Build != nil {
			if other, dup := built[s.Build.Dockerfile]; dup {
				t.Errorf("%s and %s both build %s: build it once and run its image", name, other, s.Build.Dockerfile)
			}
			built[s.Build.Dockerfile] = name
		} else if s.PullPolicy != "never" {
			t.Errorf("%s: runs the locally built %s with pull_policy %q, want never: it is in no registry", name, s.Image, s.PullPolicy)
		}
		reads := readers[kind]
		if reads == nil {
			t.Errorf("%s: built from %s, which is neither gateway nor handlers-svc", name, s.Build.Dockerfile)
			continue
		}
		for env := range s.Environment {
			if !reads(env) {
				t.Errorf("%s: sets %s, which %s does not read", name, env, kind)
			}
		}
		onCluster := slices.Contains(s.Profiles, clusterProfile)
		deps := []string{"nats", "redis"}
		if onCluster {
			deps = append([]string{"nats"}, clusterNodes...)
		}
		for _, dep := range deps {
			if s.DependsOn[dep].Condition != "service_healthy" {
				t.Errorf("%s: depends_on %s is %+v, want condition service_healthy", name, dep, s.DependsOn[dep])
			}
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s: depends on %s, which is no service", name, dep)
			}
		}
		for env, svc := range map[string]string{"NATS_URL": "nats", "REDIS_URL": "redis"} {
			u, err := url.Parse(defaults(s.Environment[env]))
			if env == "REDIS_URL" && onCluster {
				checkClusterURL(t, name, defaults(s.Environment[env]))
				svc = clusterNodes[0]
			}
			if err != nil || u.Hostname() != svc {
				t.Errorf("%s: %s=%q, want a URL on the %s service", name, env, s.Environment[env], svc)
				continue
			}
			// NATS and Redis take passwords: a container on the network
			// must not be able to send requests or dispatches.
			if pass, ok := u.User.Password(); !ok || u.User.Username() == "" || pass == "" {
				t.Errorf("%s: %s=%q has no user and password", name, env, s.Environment[env])
			}
		}
		addrEnv := map[string][]string{"gateway": {"GATEWAY_ADDR", "GATEWAY_METRICS_ADDR"}, "handlers-svc": {"HANDLERS_ADDR"}}[kind]
		for _, env := range addrEnv {
			if port := portOf(t, name, env, s.Environment[env]); !slices.Contains(container, port) {
				t.Errorf("%s: %s listens on %s, which it does not publish (%v)", name, env, port, s.Ports)
			}
		}
		// Readiness here: compose only reports it and gates depends_on on
		// it; it never restarts an unhealthy container.
		if hc := s.Healthcheck; hc != nil && !slices.Equal(hc.Test, []string{"CMD", "/" + kind, "health", "-ready"}) {
			t.Errorf("%s: health check %v, want [CMD /%s health -ready]: the image has no shell or curl", name, hc.Test, kind)
		}
		if kind == "gateway" {
			// Dev mode (public secret, /dev/token, any Origin) is opt-in.
			if v := s.Environment["GATEWAY_DEV"]; v != "${GATEWAY_DEV:-0}" && v != "0" && v != "" {
				t.Errorf("%s: GATEWAY_DEV=%q, want dev mode off unless asked for (${GATEWAY_DEV:-0})", name, v)
			}
		}
	}
	gw, hs := c.Services["gateway"].Environment, c.Services["handlers-svc"].Environment
	gwTimeout, err1 := time.ParseDuration(gw["GATEWAY_HANDLER_TIMEOUT"])
	hsTimeout, err2 := time.ParseDuration(hs["HANDLERS_TIMEOUT"])
	if err1 != nil || err2 != nil || hsTimeout > gwTimeout-500*time.Millisecond {
		t.Errorf("HANDLERS_TIMEOUT=%q, GATEWAY_HANDLER_TIMEOUT=%q: want the handlers' timeout below the gateway's, with margin",
			hs["HANDLERS_TIMEOUT"], gw["GATEWAY_HANDLER_TIMEOUT"])
	}
	if cmd := strings.Join(c.Services["nats"].Command, " "); strings.Contains(cmd, "-js") || strings.Contains(cmd, "jetstream") {
		t.Errorf("nats runs %q: JetStream must be off", cmd)
	}
	// NATS runs docs/deploy/nats.conf (its users and permissions, which
	// e2e's TestBrokerCredentialsAttack runs the stack against), and
	// Redis requires a password.
	nats := c.Services["nats"]
	if i := slices.Index(nats.Command, "-c"); i < 0 || i+1 >= len(nats.Command) ||
		!slices.Contains(nats.Volumes, "./docs/deploy/nats.conf:"+nats.Command[i+1]+":ro") {
		t.Errorf("nats runs %q with volumes %q, want -c on docs/deploy/nats.conf mounted read-only", nats.Command, nats.Volumes)
	}
	if _, err := os.Stat(filepath.Join(root(t), "docs", "deploy", "nats.conf")); err != nil {
		t.Error(err)
	}
	if !slices.Contains(c.Services["redis"].Command, "--requirepass") {
		t.Errorf("redis runs %q, want --requirepass", c.Services["redis"].Command)
	}
	// Redis's default pub/sub output-buffer limit (32mb 8mb 60) cut every
	// worker's subscription at twice the saturation rate in the benchmark.
	cmd := c.Services["redis"].Command
	if i := slices.Index(cmd, "--client-output-buffer-limit"); i < 0 || i+1 >= len(cmd) || !strings.HasPrefix(cmd[i+1], "pubsub ") {
		t.Errorf("redis runs %q: want a deliberate --client-output-buffer-limit \"pubsub ...\"", cmd)
	}
	// The recovery streams are kept with AOF (docs/operations.md, "Recovery
	// and Redis"), on a volume so they outlive the container.
	if i := slices.Index(cmd, "--appendonly"); i < 0 || i+1 >= len(cmd) || cmd[i+1] != "yes" {
		t.Errorf("redis runs %q: want --appendonly yes", cmd)
	}
	if vols := c.Services["redis"].Volumes; len(vols) == 0 {
		t.Error("redis has no volume for its AOF")
	}
}

// TestComposeMultiProfile: without a profile the stack has one gateway and
// one handlers-svc; the multi profile adds a second of each.
func TestComposeMultiProfile(t *testing.T) {
	c := loadCompose(t)
	count := func(profile string) map[string]int {
		n := map[string]int{}
		for _, s := range c.Services {
			if len(s.Profiles) == 0 || slices.Contains(s.Profiles, profile) {
				n[c.kind(s)]++
			}
		}
		return n
	}
	if n := count(""); n["gateway"] != 1 || n["handlers-svc"] != 1 {
		t.Errorf("default profile runs %d gateways and %d handlers-svc, want 1 and 1", n["gateway"], n["handlers-svc"])
	}
	if n := count(multiProfile); n["gateway"] != 2 || n["handlers-svc"] != 2 {
		t.Errorf("profile %s runs %d gateways and %d handlers-svc, want 2 and 2", multiProfile, n["gateway"], n["handlers-svc"])
	}
}

// checkClusterURL checks a REDIS_URL of the cluster profile: the go-redis
// cluster form (serverurl's rules), naming every node of the cluster.
func checkClusterURL(t *testing.T, name, s string) {
	t.Helper()
	if !redisconn.IsCluster(s) {
		t.Errorf("%s: REDIS_URL=%q is not in the cluster form (addr parameters)", name, s)
		return
	}
	if err := serverurl.Redis(s); err != nil {
		t.Errorf("%s: REDIS_URL: %v", name, err)
	}
	u, _ := url.Parse(s)
	hosts := []string{u.Hostname()}
	for _, a := range u.Query()["addr"] {
		h, _, _ := net.SplitHostPort(a)
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, clusterNodes) {
		t.Errorf("%s: REDIS_URL names %v, want every node %v", name, hosts, clusterNodes)
	}
}

// TestComposeClusterProfile: the cluster profile adds three Redis
// Cluster nodes in cluster mode, an init that joins exactly them with no
// replicas, and a gateway and a handlers-svc in per_user mode on it; the
// nodes are healthy only once the cluster is.
func TestComposeClusterProfile(t *testing.T) {
	c := loadCompose(t)
	n := map[string]int{}
	for _, s := range c.Services {
		if slices.Contains(s.Profiles, clusterProfile) {
			n[c.kind(s)]++
		}
	}
	if n["gateway"] != 1 || n["handlers-svc"] != 1 || n[""] != len(clusterNodes)+1 {
		t.Errorf("profile %s adds %v, want a gateway, a handlers-svc, %d nodes and an init", clusterProfile, n, len(clusterNodes))
	}
	for _, name := range clusterNodes {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("no %s service", name)
			continue
		}
		cmd := strings.Join(s.Command, " ")
		for _, want := range []string{"--cluster-enabled yes", "--cluster-announce-hostname " + name, "--requirepass", "--masterauth", "--appendonly yes"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s runs %q, want %q", name, cmd, want)
			}
		}
		if hc := strings.Join(s.Healthcheck.Test, " "); !strings.Contains(hc, "cluster_state:ok") {
			t.Errorf("%s: health check %q, want it healthy once the cluster is (cluster_state:ok)", name, hc)
		}
	}
	init := strings.Join(c.Services["redis-cluster-init"].Command, " ")
	for _, want := range []string{"--cluster create redis-c1:6379 redis-c2:6379 redis-c3:6379", "--cluster-replicas 0", "--cluster-yes"} {
		if !strings.Contains(init, want) {
			t.Errorf("redis-cluster-init runs %q, want %q", init, want)
		}
	}
	for _, name := range []string{"gateway-cluster", "handlers-svc-cluster"} {
		if m := c.Services[name].Environment["FANOUT_MODE"]; m != "per_user" {
			t.Errorf("%s: FANOUT_MODE=%q, want per_user (sharded pub/sub on the cluster)", name, m)
		}
		// compose.yaml's own command, "up gateway-cluster
		// handlers-svc-cluster", starts only these and their
		// dependencies: the init must be one, or no node turns healthy.
		if d := c.Services[name].DependsOn["redis-cluster-init"]; d.Condition != "service_completed_successfully" {
			t.Errorf("%s: depends_on redis-cluster-init is %+v, want condition service_completed_successfully: without it the nodes are never joined", name, d)
		}
	}
}

// TestDockerfiles checks each built service's Dockerfile: multi-stage,
// every base image with a fixed tag, a static binary (CGO off) in a
// distroless or scratch image run as a non-root user, COPY sources that
// exist in the build context, and the entrypoint the health check calls.
func TestDockerfiles(t *testing.T) {
	c := loadCompose(t)
	seen := map[string]bool{}
	for name, s := range c.Services {
		if s.Build == nil || seen[s.Build.Dockerfile] {
			continue
		}
		seen[s.Build.Dockerfile] = true
		ctxDir := filepath.Join(root(t), s.Build.Context)
		if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
			t.Errorf("%s: build context %s does not exist", name, s.Build.Context)
			continue
		}
		path := filepath.Join(ctxDir, s.Build.Dockerfile)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		checkDockerfile(t, s.Build.Dockerfile, ctxDir, "/"+c.kind(s), string(data))
	}
	if len(seen) != 2 {
		t.Errorf("%d Dockerfiles built by compose.yaml, want 2 (gateway, handlers-svc)", len(seen))
	}
}

func checkDockerfile(t *testing.T, name, ctxDir, binary, text string) {
	t.Helper()
	var stages [][]string // instructions of each stage, FROM first
	for _, line := range strings.Split(strings.ReplaceAll(text, "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Errorf("%s: %q before the first FROM", name, line)
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
	}
	if len(stages) < 2 {
		t.Fatalf("%s: %d stage(s), want a build stage and a final one", name, len(stages))
	}
	cgoOff := false
	for _, st := range stages {
		image := strings.Fields(st[0])[1]
		if !imageTagged(image) {
			t.Errorf("%s: FROM %s has no fixed tag", name, image)
		}
		for _, ins := range st {
			if strings.Contains(ins, "CGO_ENABLED=0") {
				cgoOff = true
			}
			fields := strings.Fields(ins)
			if strings.ToUpper(fields[0]) != "COPY" || strings.HasPrefix(fields[1], "--from") {
				continue
			}
			for _, src := range fields[1 : len(fields)-1] {
				if _, err := os.Stat(filepath.Join(ctxDir, src)); err != nil {
					t.Errorf("%s: COPY %s: not in the build context", name, src)
				}
			}
		}
	}
	if !cgoOff {
		t.Errorf("%s: no CGO_ENABLED=0: the binary would not be static", name)
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0])[1]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("%s: final image %s, want distroless/static or scratch", name, base)
	}
	var user, entry, health string
	for _, ins := range final {
		fields := strings.Fields(ins)
		switch strings.ToUpper(fields[0]) {
		case "USER":
			user = fields[1]
		case "ENTRYPOINT":
			entry = strings.TrimPrefix(ins, fields[0]+" ")
		case "HEALTHCHECK":
			_, health, _ = strings.Cut(ins, " CMD ")
		}
	}
	// Liveness only: an engine that restarts unhealthy containers must not
	// kill one because Redis or NATS blinked (readiness is "health -ready").
	if want := `["` + binary + `", "health"]`; strings.TrimSpace(health) != want {
		t.Errorf("%s: HEALTHCHECK CMD %s, want %s (liveness, /healthz)", name, health, want)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("%s: final stage runs as %q, want a non-root USER", name, user)
	}
	if entry != `["`+binary+`"]` {
		t.Errorf("%s: ENTRYPOINT %s, want [%q]", name, entry, binary)
	}
}

// TestDockerignore: what is not source stays out of the build context, so
// test output does not bust the build cache or land in an image layer.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, want := range []string{".git", "bin", "**/node_modules", "**/e2e/artifacts"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// usageDefault returns the default the binary's -h prints for setting env.
func usageDefault(t *testing.T, bin, env string) string {
	t.Helper()
	cmd := exec.Command(bin, "-h")
	cmd.Env = []string{}
	out, _ := cmd.CombinedOutput()
	m := regexp.MustCompile(`\$?` + env + `\)? \(default "?([^")]+)"?\)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("%s -h names no default of %s:\n%s", bin, env, out)
	}
	return m[1]
}

// composeEnv returns a service's environment as compose sets it with none
// of the variables given: KEY=default.
func composeEnv(s service) []string {
	var env []string
	for k, v := range s.Environment {
		env = append(env, k+"="+defaults(v))
	}
	slices.Sort(env)
	return env
}

// TestComposeStopGrace: compose waits stop_grace_period after SIGTERM
// before it kills a container. That must outlast the graceful stop the
// service promises (docs/operations.md: sockets told 1001 and requests
// answered within GATEWAY_SHUTDOWN_TIMEOUT; handlers-svc drains within
// HANDLERS_SHUTDOWN_TIMEOUT), with the 5 s the gateway's supervisor gives
// its workers past theirs, or the time handlers-svc's HTTP server then
// takes to finish its dispatch API calls, or the stop compose calls
// graceful is a kill.
func TestComposeStopGrace(t *testing.T) {
	c := loadCompose(t)
	gw, hs := testkit.Binaries(t)
	setting := map[string]string{"gateway": "GATEWAY_SHUTDOWN_TIMEOUT", "handlers-svc": "HANDLERS_SHUTDOWN_TIMEOUT"}
	after := map[string]time.Duration{"gateway": 5 * time.Second, "handlers-svc": handlersHTTPShutdown}
	bins := map[string]string{"gateway": gw, "handlers-svc": hs}
	for name, s := range c.Services {
		kind := c.kind(s)
		env := setting[kind]
		if env == "" {
			continue
		}
		v := defaults(s.Environment[env])
		if v == "" {
			v = usageDefault(t, bins[kind], env)
		}
		stop, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %s=%q: %v", name, env, v, err)
		}
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if s.StopGracePeriod == "" {
			grace, err = 10*time.Second, nil // compose's default
		}
		if err != nil {
			t.Fatalf("%s: stop_grace_period %q: %v", name, s.StopGracePeriod, err)
		}
		if want := stop + after[kind]; grace < want {
			t.Errorf("%s: stop_grace_period %s, want %s or more (%s=%s, plus %s): compose would kill it mid-drain", name, grace, want, env, stop, after[kind])
		}
	}
}

// TestComposeEnvironmentValid: the values compose sets (with its defaults)
// are ones the binaries accept, not only names they read. "gateway token"
// validates every setting before it signs; the gateway is tried as compose
// runs it by default (a secret of the operator's, dev mode off) and with
// GATEWAY_DEV=1 (no secret). handlers-svc validates at start, before its
// "starting" line, and then waits for NATS, which it cannot resolve here.
func TestComposeEnvironmentValid(t *testing.T) {
	c := loadCompose(t)
	gw, hs := testkit.Binaries(t)
	for name, s := range c.Services {
		env := composeEnv(s)
		switch c.kind(s) {
		case "gateway":
			for _, mode := range [][]string{{"GATEWAY_JWT_SECRET=" + testkit.Secret}, {"GATEWAY_DEV=1"}} {
				cmd := exec.Command(gw, "token", "-ttl", "1m", "probe")
				cmd.Env = append(append([]string{}, env...), mode...)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s: the gateway refuses compose's environment (with %s): %v\n%s", name, mode[0], err, out)
				}
			}
		case "handlers-svc":
			addr := fmt.Sprintf("HANDLERS_ADDR=127.0.0.1:%d", testkit.FreePort(t))
			p := testkit.StartProc(t, name, hs, append(env, addr))
			testkit.Eventually(t, 20*time.Second, name+" starts or refuses", func() bool {
				return p.Exited() || testkit.CountLogs(p.Logs(), "starting", nil) > 0
			})
			if p.Exited() || testkit.CountLogs(p.Logs(), "refusing to start", nil) > 0 {
				t.Errorf("%s: handlers-svc refuses compose's environment:\n%s", name, p.Logs())
			}
			p.Kill()
		}
	}
}

// TestComposeNATSHealthPort: the nats service's health check asks the
// monitoring port that docs/deploy/nats.conf opens; without it NATS never
// turns healthy and nothing that depends on it starts.
func TestComposeNATSHealthPort(t *testing.T) {
	c := loadCompose(t)
	conf, err := os.ReadFile(filepath.Join(root(t), "docs", "deploy", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*http_port:\s*(\d+)`).FindSubmatch(conf)
	if m == nil {
		t.Fatal("docs/deploy/nats.conf opens no http_port for the health check")
	}
	hc := c.Services["nats"].Healthcheck
	if hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "127.0.0.1:"+string(m[1])+"/healthz") {
		t.Errorf("nats health check %v, want GET http://127.0.0.1:%s/healthz (nats.conf's http_port)", hc, m[1])
	}
}
