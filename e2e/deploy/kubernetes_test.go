package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchboard/switchboard/internal/readiness"
	"github.com/switchboard/switchboard/internal/testkit"
)

// kubeDir holds the Kubernetes manifests, a kustomize base; monitoring/
// holds the ServiceMonitors, apart because they need the Prometheus
// Operator's CRDs.
var kubeDir = filepath.Join("docs", "deploy", "kubernetes")

// kubeExampleSecrets is the file with the Secrets as manifests, which
// kustomization.yaml does not apply.
const kubeExampleSecrets = "secrets.example.yaml"

// The Deployments and their containers, by the binary they run.
var kubeDeployments = map[string]struct{ deployment, container string }{
	"gateway":      {"switchboard-gateway", "gateway"},
	"handlers-svc": {"switchboard-handlers-svc", "handlers-svc"},
}

// secretFileEnv is each binary's secret given as a file, which the
// manifests mount from a Secret rather than put in the environment (its
// variable, the _FILE suffix cut, must then be unset).
var secretFileEnv = map[string]string{"gateway": "GATEWAY_JWT_SECRET_FILE", "handlers-svc": "HANDLERS_API_KEY_FILE"}

// goRuntimeEnv are variables the Go runtime reads, not the services'
// configuration.
var goRuntimeEnv = []string{"GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG"}

// addrEnv are each binary's listening addresses, the only places a
// container port can be served from.
var addrEnv = map[string][]string{"gateway": {"GATEWAY_ADDR", "GATEWAY_METRICS_ADDR"}, "handlers-svc": {"HANDLERS_ADDR"}}

type kubeMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type kubeHeader struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   kubeMeta `yaml:"metadata"`
}

// intOrString is a Kubernetes IntOrString: a port number or name, a count
// or a percentage.
type intOrString string

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	*v = intOrString(n.Value)
	return nil
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretKeyRef"`
		ConfigMapKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"configMapKeyRef"`
		ResourceFieldRef *struct {
			ContainerName string `yaml:"containerName"`
			Resource      string `yaml:"resource"`
			Divisor       string `yaml:"divisor"`
		} `yaml:"resourceFieldRef"`
		FieldRef any `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	Exec           any `yaml:"exec"`
	TimeoutSeconds int `yaml:"timeoutSeconds"`
}

type container struct {
	Name  string `yaml:"name"`
	Image string `yaml:"image"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env     []envVar `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef any `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec any `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir any `yaml:"emptyDir"`
}

type servicePort struct {
	Name       string      `yaml:"name"`
	Port       int         `yaml:"port"`
	TargetPort intOrString `yaml:"targetPort"`
}

type deployment struct {
	kubeHeader `yaml:",inline"`
	Spec       struct {
		Replicas int           `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxUnavailable intOrString `yaml:"maxUnavailable"`
				MaxSurge       intOrString `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata kubeMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
				Volumes    []volume    `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type kubeService struct {
	kubeHeader `yaml:",inline"`
	Spec       struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		SessionAffinity          string            `yaml:"sessionAffinity"`
		Selector                 map[string]string `yaml:"selector"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Ports                    []servicePort     `yaml:"ports"`
	} `yaml:"spec"`
}

type pdb struct {
	kubeHeader `yaml:",inline"`
	Spec       struct {
		MaxUnavailable intOrString   `yaml:"maxUnavailable"`
		MinAvailable   intOrString   `yaml:"minAvailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	kubeHeader `yaml:",inline"`
	Spec       struct {
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port          string `yaml:"port"`
			Path          string `yaml:"path"`
			ScrapeTimeout string `yaml:"scrapeTimeout"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type keyed struct {
	kubeHeader `yaml:",inline"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type kustomization struct {
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// kube is everything the manifests declare, by kind and name.
type kube struct {
	deployments     map[string]deployment
	services        map[string]kubeService
	pdbs            map[string]pdb
	configMaps      map[string]keyed
	secrets         map[string]keyed // secrets.example.yaml's
	serviceMonitors map[string]serviceMonitor
}

// readDocs returns the YAML documents of path, each decoded as its kind.
func readDocs(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []*yaml.Node
	dec := yaml.NewDecoder(f)
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(n.Content) > 0 && n.Content[0].Kind == yaml.MappingNode {
			docs = append(docs, &n)
		}
	}
}

func decodeInto[T any](t *testing.T, file string, n *yaml.Node, into map[string]T, name string) {
	t.Helper()
	var v T
	if err := n.Decode(&v); err != nil {
		t.Fatalf("%s: %s: %v", file, name, err)
	}
	if _, dup := into[name]; dup {
		t.Errorf("%s: a second %s", file, name)
	}
	into[name] = v
}

func loadKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return k
}

// loadKube reads every file the kustomizations list, and the example
// Secrets.
func loadKube(t *testing.T) kube {
	t.Helper()
	k := kube{map[string]deployment{}, map[string]kubeService{}, map[string]pdb{}, map[string]keyed{},
		map[string]keyed{}, map[string]serviceMonitor{}}
	base := filepath.Join(root(t), kubeDir)
	var files []string
	for _, dir := range []string{base, filepath.Join(base, "monitoring")} {
		for _, r := range loadKustomization(t, dir).Resources {
			files = append(files, filepath.Join(dir, r))
		}
	}
	files = append(files, filepath.Join(base, kubeExampleSecrets))
	for _, file := range files {
		rel, _ := filepath.Rel(base, file)
		for _, n := range readDocs(t, file) {
			var h kubeHeader
			if err := n.Decode(&h); err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			if h.APIVersion == "" || h.Kind == "" || h.Metadata.Name == "" {
				t.Errorf("%s: an object without apiVersion, kind or name: %+v", rel, h)
				continue
			}
			name := h.Metadata.Name
			switch h.Kind {
			case "Deployment":
				decodeInto(t, rel, n, k.deployments, name)
			case "Service":
				decodeInto(t, rel, n, k.services, name)
			case "PodDisruptionBudget":
				decodeInto(t, rel, n, k.pdbs, name)
			case "ConfigMap":
				decodeInto(t, rel, n, k.configMaps, name)
			case "Secret":
				if filepath.Base(file) != kubeExampleSecrets {
					t.Errorf("%s: Secret %s: the Secrets are the operator's (%s shows them), not applied by the base", rel, name, kubeExampleSecrets)
				}
				decodeInto(t, rel, n, k.secrets, name)
			case "ServiceMonitor":
				decodeInto(t, rel, n, k.serviceMonitors, name)
			case "Namespace":
			default:
				t.Errorf("%s: %s %s, which this test does not check", rel, h.Kind, name)
			}
		}
	}
	return k
}

// container returns the Deployment and container that run binary.
func (k kube) container(t *testing.T, binary string) (deployment, container) {
	t.Helper()
	want := kubeDeployments[binary]
	d, ok := k.deployments[want.deployment]
	if !ok {
		t.Fatalf("no Deployment %s", want.deployment)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == want.container {
			return d, c
		}
	}
	t.Fatalf("Deployment %s has no container %s", want.deployment, want.container)
	return d, container{}
}

// env returns the container's variable name, with where it comes from.
func (c container) env(name string) (envVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return envVar{}, false
}

// literal returns the value the container's manifest gives name: its
// env value, or the key of a ConfigMap it takes with envFrom; "" if
// neither.
func (k kube) literal(c container, name string) string {
	if e, ok := c.env(name); ok {
		return e.Value
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef != nil {
			if v, ok := k.configMaps[from.ConfigMapRef.Name].Data[name]; ok {
				return v
			}
		}
	}
	return ""
}

// port resolves a probe's or Service's port (a number or a name) to one
// of the container's ports; 0 if it names none.
func (c container) port(p intOrString) int {
	for _, cp := range c.Ports {
		if string(p) == cp.Name || string(p) == strconv.Itoa(cp.ContainerPort) {
			return cp.ContainerPort
		}
	}
	return 0
}

// selects reports whether selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// cpuCores parses a CPU quantity ("2", "1500m", "0.5").
func cpuCores(q string) (float64, error) {
	if m, ok := strings.CutSuffix(q, "m"); ok {
		v, err := strconv.ParseFloat(m, 64)
		return v / 1000, err
	}
	return strconv.ParseFloat(q, 64)
}

// settingOf returns the duration the container sets for env, or the
// binary's default when it sets none.
func (k kube) settingOf(t *testing.T, c container, bin, env string) time.Duration {
	t.Helper()
	v := k.literal(c, env)
	if v == "" {
		v = usageDefault(t, bin, env)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", c.Name, env, v, err)
	}
	return d
}

// TestKubernetesKustomization: the kustomizations list every manifest
// beside them and only files that exist, set one namespace, and name the
// images the Deployments run, each with a fixed tag.
func TestKubernetesKustomization(t *testing.T) {
	base := filepath.Join(root(t), kubeDir)
	for _, dir := range []string{base, filepath.Join(base, "monitoring")} {
		k := loadKustomization(t, dir)
		if k.Namespace != "switchboard" {
			t.Errorf("%s: namespace %q, want switchboard", dir, k.Namespace)
		}
		yamls, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, f := range yamls {
			name := filepath.Base(f)
			if name != "kustomization.yaml" && name != kubeExampleSecrets && !slices.Contains(k.Resources, name) {
				t.Errorf("%s: %s is not in kustomization.yaml's resources", dir, name)
			}
		}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
			}
		}
	}
	k := loadKube(t)
	images := map[string]bool{}
	for _, img := range loadKustomization(t, base).Images {
		images[img.Name] = true
		if !imageTagged(img.NewName + ":" + img.NewTag) {
			t.Errorf("kustomization.yaml: image %s becomes %s:%s, which has no fixed tag", img.Name, img.NewName, img.NewTag)
		}
	}
	for binary := range kubeDeployments {
		_, c := k.container(t, binary)
		if !imageTagged(c.Image) {
			t.Errorf("%s: image %q has no fixed tag", binary, c.Image)
		}
		if name, _, _ := strings.Cut(c.Image, ":"); !images[name] {
			t.Errorf("%s: image %s is not in kustomization.yaml's images, where an operator names theirs", binary, name)
		}
	}
}

// TestKubernetesEnvNames: every variable the manifests set, one by one or
// through a ConfigMap, is one the binary reads (asked of the binaries, as
// for compose.yaml), or the Go runtime's; the shared ConfigMap's are read
// by both.
func TestKubernetesEnvNames(t *testing.T) {
	k := loadKube(t)
	handlers := handlersEnv(t)
	readers := map[string]func(string) bool{"gateway": gatewayReads(t), "handlers-svc": func(env string) bool { return handlers[env] }}
	for binary, reads := range readers {
		_, c := k.container(t, binary)
		for _, e := range c.Env {
			if !reads(e.Name) && !slices.Contains(goRuntimeEnv, e.Name) {
				t.Errorf("%s: sets %s, which %s does not read", binary, e.Name, binary)
			}
		}
		for _, from := range c.EnvFrom {
			if from.SecretRef != nil {
				t.Errorf("%s: envFrom a Secret: name each variable, so a key added to the Secret cannot become a setting unseen", binary)
			}
			if from.ConfigMapRef == nil {
				continue
			}
			cm, ok := k.configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %s, which the manifests do not make", binary, from.ConfigMapRef.Name)
			}
			for key := range cm.Data {
				if !reads(key) {
					t.Errorf("%s: ConfigMap %s sets %s, which %s does not read", binary, cm.Metadata.Name, key, binary)
				}
			}
		}
	}
}

// TestKubernetesWiring checks what ties the objects together, which
// kubectl accepts when wrong: selectors and labels, Service and probe
// ports against the container ports the binaries listen on, the Secret
// keys against the Secrets' example, the secret file's mount, the
// Prometheus annotations and ServiceMonitors, the PDBs, and the pods'
// security settings.
func TestKubernetesWiring(t *testing.T) {
	k := loadKube(t)
	gw, hs := testkit.Binaries(t)
	bins := map[string]string{"gateway": gw, "handlers-svc": hs}
	referenced := map[string]map[string]bool{} // Secret -> keys
	for binary := range kubeDeployments {
		d, c := k.container(t, binary)
		pod := d.Spec.Template
		if !selects(d.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
			t.Errorf("%s: selector %v does not match its pods' labels %v", d.Metadata.Name, d.Spec.Selector.MatchLabels, pod.Metadata.Labels)
		}
		// Listening addresses: on the pod's address (the kubelet and
		// Prometheus come from outside the pod), on a declared port.
		served := map[int]string{} // container port -> the setting that serves it
		for _, env := range addrEnv[binary] {
			addr := k.literal(c, env)
			if addr == "" {
				addr = usageDefault(t, bins[binary], env)
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: %s=%q is not host:port", binary, env, addr)
				continue
			}
			if host != "" && host != "0.0.0.0" && host != "::" {
				t.Errorf("%s: %s=%q listens on %s only: the kubelet's probes and Prometheus reach the pod's address", binary, env, addr, host)
			}
			n, _ := strconv.Atoi(port)
			if c.port(intOrString(port)) == 0 {
				t.Errorf("%s: %s listens on %s, which is no container port", binary, env, port)
			}
			served[n] = env
		}
		for _, cp := range c.Ports {
			if served[cp.ContainerPort] == "" {
				t.Errorf("%s: container port %s (%d) is served by none of %v", binary, cp.Name, cp.ContainerPort, addrEnv[binary])
			}
		}
		// Probes: readiness on /readyz, liveness on /healthz (never
		// readiness: every instance turns unready together when Redis
		// blinks), on ports the binary serves. The gateway's on the
		// supervisor's address, which sees every worker.
		for _, p := range []struct {
			name, path string
			probe      *probe
		}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no httpGet %s", binary, p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s: %s GETs %s, want %s", binary, p.name, p.probe.HTTPGet.Path, p.path)
			}
			port := c.port(p.probe.HTTPGet.Port)
			if served[port] == "" {
				t.Errorf("%s: %s asks port %q, which the binary does not serve", binary, p.name, p.probe.HTTPGet.Port)
			}
			if binary == "gateway" && served[port] != "GATEWAY_METRICS_ADDR" {
				t.Errorf("gateway: %s asks %s, want the supervisor's GATEWAY_METRICS_ADDR: one worker answers on GATEWAY_ADDR, and a hung one is missed", p.name, served[port])
			}
			if p.probe.TimeoutSeconds < 4 {
				t.Errorf("%s: %s timeoutSeconds %d, want 4 or more: the supervisor asks each worker for up to 3 s", binary, p.name, p.probe.TimeoutSeconds)
			}
		}
		// Prometheus by annotation: the port that serves /metrics.
		ann := pod.Metadata.Annotations
		metricsEnv := map[string]string{"gateway": "GATEWAY_METRICS_ADDR", "handlers-svc": "HANDLERS_ADDR"}[binary]
		if n, _ := strconv.Atoi(ann["prometheus.io/port"]); ann["prometheus.io/scrape"] != "true" || served[n] != metricsEnv || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: prometheus.io annotations %v, want scrape on the port of %s, path /metrics", binary, ann, metricsEnv)
		}
		// Secrets and ConfigMaps named exist; the secret file is mounted.
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				if referenced[r.Name] == nil {
					referenced[r.Name] = map[string]bool{}
				}
				referenced[r.Name][r.Key] = true
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				if _, ok := k.configMaps[r.Name].Data[r.Key]; !ok {
					t.Errorf("%s: %s from ConfigMap %s key %s, which it does not have", binary, e.Name, r.Name, r.Key)
				}
			}
		}
		mounts := map[string]mount{} // mount path -> volume
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = mount{m.Name, m.SubPath}
		}
		for _, v := range pod.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			if referenced[v.Secret.SecretName] == nil {
				referenced[v.Secret.SecretName] = map[string]bool{}
			}
			for _, it := range v.Secret.Items {
				referenced[v.Secret.SecretName][it.Key] = true
			}
		}
		fileEnv := secretFileEnv[binary]
		if _, err := secretFile(pod.Spec.Volumes, mounts, k.literal(c, fileEnv)); err != nil {
			t.Errorf("%s: %s: %v", binary, fileEnv, err)
		}
		env := strings.TrimSuffix(fileEnv, "_FILE")
		if _, ok := c.env(env); ok {
			t.Errorf("%s: %s in the environment: mount the secret as a file (%s)", binary, env, fileEnv)
		}
		// Non-root, read-only; the gateway's metrics sockets need a
		// writable $TMPDIR.
		sc := c.SecurityContext
		if !pod.Spec.SecurityContext.RunAsNonRoot || pod.Spec.SecurityContext.RunAsUser == 0 {
			t.Errorf("%s: runAsNonRoot %v, runAsUser %d: want a non-root user", binary, pod.Spec.SecurityContext.RunAsNonRoot, pod.Spec.SecurityContext.RunAsUser)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: securityContext %+v, want no privilege escalation, a read-only root filesystem and every capability dropped", binary, sc)
		}
		if binary == "gateway" && sc.ReadOnlyRootFilesystem {
			tmp := k.literal(c, "TMPDIR")
			if tmp == "" {
				tmp = "/tmp"
			}
			vol := mounts[tmp].vol
			if !slices.ContainsFunc(pod.Spec.Volumes, func(v volume) bool {
				return v.Name == vol && v.EmptyDir != nil
			}) {
				t.Errorf("gateway: read-only root filesystem and no emptyDir at %s, where the supervisor makes the workers' metrics sockets", tmp)
			}
		}
		// A PDB that selects the pods and lets a drain take one.
		covered := false
		for _, p := range k.pdbs {
			if !selects(p.Spec.Selector.MatchLabels, pod.Metadata.Labels) {
				continue
			}
			covered = true
			maxU, _ := strconv.Atoi(string(p.Spec.MaxUnavailable))
			minA, errMin := strconv.Atoi(string(p.Spec.MinAvailable))
			if maxU < 1 && (errMin != nil || minA >= d.Spec.Replicas) {
				t.Errorf("%s: PDB %s (maxUnavailable %q, minAvailable %q) lets no pod of %d go: node drains would hang", binary, p.Metadata.Name, p.Spec.MaxUnavailable, p.Spec.MinAvailable, d.Spec.Replicas)
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", binary)
		}
		if d.Spec.Replicas < 2 {
			t.Errorf("%s: %d replica(s): a rollout or a drain leaves no instance", binary, d.Spec.Replicas)
		}
	}
	// Every Service and ServiceMonitor reaches pods, on a port they serve.
	for name, s := range k.services {
		var matched []string
		for binary := range kubeDeployments {
			d, c := k.container(t, binary)
			if !selects(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
				continue
			}
			matched = append(matched, binary)
			for _, p := range s.Spec.Ports {
				if c.port(p.TargetPort) == 0 {
					t.Errorf("Service %s: port %s targets %q, which is no port of %s", name, p.Name, p.TargetPort, binary)
				}
			}
		}
		if len(matched) != 1 {
			t.Errorf("Service %s selects the pods of %v, want one Deployment's", name, matched)
		}
		if s.Spec.SessionAffinity != "" && s.Spec.SessionAffinity != "None" {
			t.Errorf("Service %s: sessionAffinity %s: not needed (any gateway serves any user, and clients resume), and it skews load", name, s.Spec.SessionAffinity)
		}
	}
	for name, m := range k.serviceMonitors {
		found := false
		for _, s := range k.services {
			if !selects(m.Spec.Selector.MatchLabels, s.Metadata.Labels) {
				continue
			}
			found = true
			for _, e := range m.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p servicePort) bool {
					return p.Name == e.Port
				}) {
					t.Errorf("ServiceMonitor %s: port %s is not a port of Service %s", name, e.Port, s.Metadata.Name)
				}
				if timeout, err := time.ParseDuration(e.ScrapeTimeout); e.Path != "/metrics" || err != nil || timeout <= 3*time.Second {
					t.Errorf("ServiceMonitor %s: path %q, scrapeTimeout %q: want /metrics, above 3 s (the supervisor reads each worker for up to 3 s)", name, e.Path, e.ScrapeTimeout)
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s selects no Service", name)
		}
	}
	// Each key referenced is in the example Secrets, and each key there is
	// referenced.
	for name, keys := range referenced {
		s, ok := k.secrets[name]
		if !ok {
			t.Errorf("Secret %s is referenced, and not in %s", name, kubeExampleSecrets)
			continue
		}
		for key := range keys {
			if _, ok := s.StringData[key]; !ok {
				t.Errorf("Secret %s: key %s is referenced, and not in %s", name, key, kubeExampleSecrets)
			}
		}
		for key := range s.StringData {
			if !keys[key] {
				t.Errorf("%s: Secret %s key %s is used by no Deployment", kubeExampleSecrets, name, key)
			}
		}
	}
	for name := range k.secrets {
		if referenced[name] == nil {
			t.Errorf("%s: Secret %s is used by no Deployment", kubeExampleSecrets, name)
		}
	}
	// What must be the same on both, or shorter on handlers-svc.
	_, gc := k.container(t, "gateway")
	_, hc := k.container(t, "handlers-svc")
	for _, env := range []string{"FANOUT_MODE", "HISTORY_WINDOW"} {
		if k.literal(gc, env) != k.literal(hc, env) {
			t.Errorf("%s: %q on the gateway, %q on handlers-svc: set it the same on both", env, k.literal(gc, env), k.literal(hc, env))
		}
	}
	if gt, ht := k.settingOf(t, gc, gw, "GATEWAY_HANDLER_TIMEOUT"), k.settingOf(t, hc, hs, "HANDLERS_TIMEOUT"); ht > gt-500*time.Millisecond {
		t.Errorf("HANDLERS_TIMEOUT %s, GATEWAY_HANDLER_TIMEOUT %s: want the handlers' below the gateway's, with margin", ht, gt)
	}
}

// mount is a volume mounted in a container: the volume, and the item of
// it mounted alone (subPath), if so.
type mount struct{ vol, sub string }

// secretFile returns the Secret key behind path, a file in a container:
// an item of a secret volume mounted at path alone (subPath), so that the
// file stays the one of the container's start, as its environment does.
// A whole volume mounted at its directory is refused: the kubelet
// rewrites it in a running pod when the Secret changes, and a worker the
// supervisor restarts would then read another secret than its siblings.
func secretFile(volumes []volume, mounts map[string]mount, path string) (key string, err error) {
	if path == "" {
		return "", errors.New("not set")
	}
	m, ok := mounts[path]
	if !ok {
		if _, whole := mounts[filepath.Clean(filepath.Dir(path))]; whole {
			return "", fmt.Errorf("%s: its directory is a whole Secret volume, which changes in a running pod: mount the item alone, with subPath", path)
		}
		return "", fmt.Errorf("%s: no volume is mounted there (mount the Secret item with subPath)", path)
	}
	if m.sub == "" {
		return "", fmt.Errorf("%s: a volume without subPath is mounted there", path)
	}
	for _, v := range volumes {
		if v.Name != m.vol || v.Secret == nil {
			continue
		}
		if len(v.Secret.Items) == 0 {
			return m.sub, nil
		}
		for _, it := range v.Secret.Items {
			if it.Path == m.sub {
				return it.Key, nil
			}
		}
		return "", fmt.Errorf("%s: Secret volume %s has no item at %s", path, m.vol, m.sub)
	}
	return "", fmt.Errorf("%s: volume %s is no Secret", path, m.vol)
}

// TestKubernetesGOMAXPROCS: the gateway's GOMAXPROCS is its CPU limit, a
// whole number of cores, so that it runs as many workers as it may use
// cores (docs/operations.md, "Workers"); without a limit, limits.cpu
// would be the node's cores.
func TestKubernetesGOMAXPROCS(t *testing.T) {
	k := loadKube(t)
	_, c := k.container(t, "gateway")
	e, ok := c.env("GOMAXPROCS")
	if !ok || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
		t.Fatalf("gateway: GOMAXPROCS %+v, want it from resourceFieldRef limits.cpu", e)
	}
	ref := e.ValueFrom.ResourceFieldRef
	if ref.Resource != "limits.cpu" || (ref.ContainerName != "" && ref.ContainerName != c.Name) || (ref.Divisor != "" && ref.Divisor != "1") {
		t.Errorf("gateway: GOMAXPROCS from %+v, want the gateway container's limits.cpu in cores (divisor 1)", *ref)
	}
	limit, err := cpuCores(c.Resources.Limits["cpu"])
	if err != nil || limit < 1 || limit != math.Trunc(limit) {
		t.Errorf("gateway: limits.cpu %q, want whole cores: GOMAXPROCS takes it rounded up, more threads than the quota runs", c.Resources.Limits["cpu"])
	}
	if v := k.literal(c, "GATEWAY_WORKERS"); v != "" {
		t.Errorf("gateway: GATEWAY_WORKERS=%s: leave it to follow GOMAXPROCS", v)
	}
}

// handlersHTTPShutdown is how long handlers-svc may take past its
// HANDLERS_SHUTDOWN_TIMEOUT: 2 s for the handlers it cancelled then to
// return (natserve.CancelGrace), then its HTTP server's time to finish
// its requests (httpShutdownTimeout in handlers-svc/service): a dispatch
// API call, 5 s, its record, 2 s, and a margin.
const handlersHTTPShutdown = 2*time.Second + 8*time.Second

// TestKubernetesGracePeriod: the kubelet sends SIGKILL
// terminationGracePeriodSeconds after it starts the preStop hook. That
// must outlast the hook and the drain the manifest's settings give: the
// gateway's GATEWAY_SHUTDOWN_TIMEOUT, the 5 s its supervisor waits for a
// worker past it (gateway/cmd/gateway/main.go, StopTimeout) and the 5 s
// it then waits for a worker it killed (supervisor's killWait);
// handlers-svc's HANDLERS_SHUTDOWN_TIMEOUT and the 8 s its HTTP server
// gets after (httpShutdownTimeout).
func TestKubernetesGracePeriod(t *testing.T) {
	k := loadKube(t)
	gw, hs := testkit.Binaries(t)
	for binary, drain := range map[string]func(c container) time.Duration{
		"gateway": func(c container) time.Duration {
			return k.settingOf(t, c, gw, "GATEWAY_SHUTDOWN_TIMEOUT") + 5*time.Second + 5*time.Second
		},
		"handlers-svc": func(c container) time.Duration {
			return k.settingOf(t, c, hs, "HANDLERS_SHUTDOWN_TIMEOUT") + handlersHTTPShutdown
		},
	} {
		d, c := k.container(t, binary)
		var preStop time.Duration
		if p := c.Lifecycle.PreStop; p == nil || p.Sleep == nil || p.Sleep.Seconds < 1 {
			// Without it the pod stops accepting while kube-proxy and the
			// load balancers still send it connections.
			t.Errorf("%s: no preStop sleep: SIGTERM would come before the endpoints are gone", binary)
		} else {
			preStop = time.Duration(p.Sleep.Seconds) * time.Second
		}
		grace := 30 * time.Second // Kubernetes's default
		if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if want := preStop + drain(c); grace <= want {
			t.Errorf("%s: terminationGracePeriodSeconds %s, want more than %s (preStop %s, drain %s): the kubelet would kill it mid-drain", binary, grace, want, preStop, want-preStop)
		}
	}
}

// TestKubernetesExampleSecretsRefused: secrets.example.yaml applied as it
// is stops the services at start, rather than running them on its public
// values.
func TestKubernetesExampleSecretsRefused(t *testing.T) {
	k := loadKube(t)
	gw, hs := testkit.Binaries(t)
	file := filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(file, []byte(k.secrets["switchboard-gateway"].StringData["jwt-secret"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gw, "token", "-ttl", "1m", "probe")
	cmd.Env = []string{"GATEWAY_JWT_SECRET_FILE=" + file}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("the gateway accepts the example's jwt-secret:\n%s", out)
	}
	file = filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(file, []byte(k.secrets["switchboard-handlers-svc"].StringData["api-key"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(hs)
	cmd.Env = []string{"HANDLERS_ADDR=127.0.0.1:0", "HANDLERS_API_KEY_FILE=" + file}
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 2 {
		t.Errorf("handlers-svc with the example's api-key: exit %d, want 2 (refused):\n%s", code, out)
	}
}

// TestKubernetesProbesOnRealBinaries runs both binaries with their
// manifests' environment (the Secrets' values and the listening ports the
// test's own) and asks what the kubelet, the Services and Prometheus
// would: each probe's path on its port, each Service's target port, the
// scraped /metrics. The readiness probes turn 503 when Redis stops, and
// the liveness probes stay 200: a liveness probe that followed Redis
// would restart every pod at once on a blip. The gateway runs as many
// workers as its CPU limit.
func TestKubernetesProbesOnRealBinaries(t *testing.T) {
	k := loadKube(t)
	gw, hs := testkit.Binaries(t)
	n := testkit.StartNATS(t)
	rd := testkit.StartRedis(t)
	values := map[string]string{ // the Secrets' keys, as the test runs them
		"nats-url": n.URL(), "redis-url": rd.URL(), "jwt-secret": testkit.Secret,
		"api-key": "kubernetes-test-api-key-32-bytes", "api-key-previous": "kubernetes-test-previous-api-key",
		"jwt-previous-secret": "kubernetes-test-previous-secret-of-32-bytes", // optional keys, present: mid-rotation
	}
	type running struct {
		binary string
		c      container
		ports  map[int]int // container port -> the test's port
	}
	var runs []running
	for binary, bin := range map[string]string{"gateway": gw, "handlers-svc": hs} {
		d, c := k.container(t, binary)
		ports := map[int]int{}
		env := []string{"TMPDIR=" + t.TempDir()} // the emptyDir at /tmp
		for _, from := range c.EnvFrom {
			if from.ConfigMapRef != nil {
				for key, v := range k.configMaps[from.ConfigMapRef.Name].Data {
					env = append(env, key+"="+v)
				}
			}
		}
		mounts := map[string]mount{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = mount{m.Name, m.SubPath}
		}
		for _, e := range c.Env {
			v := e.Value
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				var ok bool
				if v, ok = values[e.ValueFrom.SecretKeyRef.Key]; !ok {
					t.Fatalf("%s: %s from Secret key %s, which this test has no value for", binary, e.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
				q := c.Resources.Limits[strings.TrimPrefix(e.ValueFrom.ResourceFieldRef.Resource, "limits.")]
				cores, err := cpuCores(q)
				if err != nil {
					t.Fatalf("%s: %s from %s %q: %v", binary, e.Name, e.ValueFrom.ResourceFieldRef.Resource, q, err)
				}
				v = strconv.Itoa(int(math.Ceil(cores)))
			case e.ValueFrom != nil:
				t.Fatalf("%s: %s from %+v, which this test does not run", binary, e.Name, *e.ValueFrom)
			case e.Name == secretFileEnv[binary]:
				key, err := secretFile(d.Spec.Template.Spec.Volumes, mounts, v)
				if err != nil {
					t.Fatal(err)
				}
				v = filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(v, []byte(values[key]), 0o600); err != nil {
					t.Fatal(err)
				}
			case slices.Contains(addrEnv[binary], e.Name):
				_, port, err := net.SplitHostPort(v)
				cp, _ := strconv.Atoi(port)
				if err != nil || cp == 0 {
					t.Fatalf("%s: %s=%q", binary, e.Name, v)
				}
				ports[cp] = testkit.FreePort(t)
				v = fmt.Sprintf("127.0.0.1:%d", ports[cp])
			}
			env = append(env, e.Name+"="+v)
		}
		testkit.StartProc(t, binary, bin, env)
		runs = append(runs, running{binary, c, ports})
	}
	url := func(r running, port intOrString, path string) string {
		return fmt.Sprintf("http://127.0.0.1:%d%s", r.ports[r.c.port(port)], path)
	}
	for _, r := range runs {
		ready := url(r, r.c.ReadinessProbe.HTTPGet.Port, r.c.ReadinessProbe.HTTPGet.Path)
		testkit.Eventually(t, 60*time.Second, r.binary+"'s readiness probe "+ready+" answers 200", func() bool { return getStatus(ready) == 200 })
		live := url(r, r.c.LivenessProbe.HTTPGet.Port, r.c.LivenessProbe.HTTPGet.Path)
		if code := getStatus(live); code != 200 {
			t.Errorf("%s: liveness probe %s: %d, want 200", r.binary, live, code)
		}
		for name, s := range k.services {
			d, _ := k.container(t, r.binary)
			if !selects(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
				continue
			}
			for _, p := range s.Spec.Ports {
				if u := url(r, p.TargetPort, "/healthz"); getStatus(u) != 200 {
					t.Errorf("Service %s port %s: %s does not answer 200", name, p.Name, u)
				}
			}
		}
		ann := k.deploymentOf(t, r.binary).Spec.Template.Metadata.Annotations
		metrics := url(r, intOrString(ann["prometheus.io/port"]), ann["prometheus.io/path"])
		// A series each serves once up: the supervisor's of each worker,
		// handlers-svc's readiness.
		series := map[string]string{"gateway": "switchboard_gateway_worker_up", "handlers-svc": "switchboard_handlers_ready"}[r.binary]
		if s, err := testkit.ReadMetrics(metrics); err != nil || len(s.Match(series)) == 0 {
			t.Errorf("%s: scraping %s: %v, or no %s", r.binary, metrics, err, series)
		}
		if r.binary == "handlers-svc" {
			// The key mounted as a file is the dispatch API's: an empty
			// body with it is refused as a body (400), not as a caller.
			api := url(r, "http", "/v1/dispatch")
			for key, want := range map[string]int{values["api-key"]: 400, "not-the-kubernetes-api-key": 401} {
				if code := postStatus(t, api, key); code != want {
					t.Errorf("handlers-svc: POST %s with key %q: %d, want %d", api, key, code, want)
				}
			}
		}
		if r.binary == "gateway" {
			cores, _ := cpuCores(r.c.Resources.Limits["cpu"])
			if body := readyBody(t, ready); len(body.Workers) != int(math.Ceil(cores)) {
				t.Errorf("gateway: %d workers with limits.cpu %s, want as many as the cores", len(body.Workers), r.c.Resources.Limits["cpu"])
			}
		}
	}

	rd.Stop()
	for _, r := range runs {
		ready := url(r, r.c.ReadinessProbe.HTTPGet.Port, r.c.ReadinessProbe.HTTPGet.Path)
		testkit.Eventually(t, 30*time.Second, r.binary+"'s readiness probe fails with Redis stopped", func() bool { return getStatus(ready) == 503 })
		live := url(r, r.c.LivenessProbe.HTTPGet.Port, r.c.LivenessProbe.HTTPGet.Path)
		if code := getStatus(live); code != 200 {
			t.Errorf("%s: liveness probe %s: %d with Redis stopped, want 200: the kubelet would restart every pod on a Redis blip", r.binary, live, code)
		}
	}
}

// deploymentOf returns the Deployment that runs binary.
func (k kube) deploymentOf(t *testing.T, binary string) deployment {
	t.Helper()
	dep, _ := k.container(t, binary)
	return dep
}

// postStatus is the status url answers an empty POST with key as its
// bearer token.
func postStatus(t *testing.T, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readyBody is the readiness body url answers.
func readyBody(t *testing.T, url string) readiness.Body {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b readiness.Body
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return b
}
