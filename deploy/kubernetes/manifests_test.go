package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kinds are the API types the manifests may use; anything else is an error,
// so a typo in apiVersion or kind cannot slip through as "unknown, skipped".
var kinds = map[string]func() any{
	"v1/Namespace":                   func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                   func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                      func() any { return new(corev1.Secret) },
	"v1/Service":                     func() any { return new(corev1.Service) },
	"v1/PersistentVolumeClaim":       func() any { return new(corev1.PersistentVolumeClaim) },
	"apps/v1/Deployment":             func() any { return new(appsv1.Deployment) },
	"apps/v1/DaemonSet":              func() any { return new(appsv1.DaemonSet) },
	"cert-manager.io/v1/Certificate": func() any { return new(cmv1.Certificate) },
	"cert-manager.io/v1/Issuer":      func() any { return new(cmv1.Issuer) },
}

// object is one decoded manifest document.
type object struct {
	file string
	gvk  string
	obj  any
}

// decodeAll splits a multi-document YAML stream and decodes every document
// strictly (unknown and duplicate fields are errors) into its API type.
func decodeAll(name string, data []byte) ([]object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []object
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		mk, ok := kinds[gvk]
		if !ok {
			return nil, fmt.Errorf("%s: document %d: apiVersion/kind %q is not one the manifests may use", name, i, gvk)
		}
		obj := mk()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", name, i, gvk, err)
		}
		out = append(out, object{file: name, gvk: gvk, obj: obj})
	}
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// manifests decodes every *.yaml file here and under examples/.
func manifests(t *testing.T) []object {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.yaml", "examples/*.yaml"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 4 {
		t.Fatalf("found only %d manifest files: %v", len(files), files)
	}
	var all []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(f, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 0 {
			t.Fatalf("%s: no Kubernetes object in it", f)
		}
		all = append(all, objs...)
	}
	return all
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := manifests(t)
	count := map[string]int{}
	for _, o := range objs {
		count[o.gvk]++
	}
	// What the issue asks for must be there.
	for _, want := range []string{"apps/v1/Deployment", "apps/v1/DaemonSet", "v1/Service",
		"v1/PersistentVolumeClaim", "v1/ConfigMap", "v1/Secret", "cert-manager.io/v1/Certificate"} {
		if count[want] == 0 {
			t.Errorf("no %s among the manifests", want)
		}
	}
	t.Logf("decoded %d objects: %v", len(objs), count)
}

// The strict decoder must reject what a lax one would drop silently;
// otherwise TestManifestsDecodeStrictly proves nothing.
func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i, imagePullPolcy: Always}]
`, "unknown field"},
		{"misplaced field", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: [{port: 1}]
  hostPID: true
`, "unknown field"},
		{"duplicate field", `
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {a: "1"}
data: {b: "2"}
`, "already set"},
		{"unknown kind", `
apiVersion: apps/v1
kind: Deamonset
metadata: {name: x}
`, "is not one the manifests may use"},
		{"wrong type", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec: {ports: [{port: "six"}]}
`, "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll("test.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// find returns the one object of type T named name.
func find[T any](t *testing.T, objs []object, name string) *T {
	t.Helper()
	var found *T
	for _, o := range objs {
		if v, ok := o.obj.(*T); ok && metaOf(o.obj).Name == name {
			if found != nil {
				t.Fatalf("two %T named %s", v, name)
			}
			found = v
		}
	}
	if found == nil {
		var zero T
		t.Fatalf("no %T named %s", zero, name)
	}
	return found
}

func metaOf(o any) metav1.ObjectMeta {
	switch v := o.(type) {
	case *corev1.Namespace:
		return v.ObjectMeta
	case *corev1.ConfigMap:
		return v.ObjectMeta
	case *corev1.Secret:
		return v.ObjectMeta
	case *corev1.Service:
		return v.ObjectMeta
	case *corev1.PersistentVolumeClaim:
		return v.ObjectMeta
	case *appsv1.Deployment:
		return v.ObjectMeta
	case *appsv1.DaemonSet:
		return v.ObjectMeta
	case *cmv1.Certificate:
		return v.ObjectMeta
	case *cmv1.Issuer:
		return v.ObjectMeta
	}
	panic(fmt.Sprintf("metaOf: %T", o))
}

// workload is what the checks need of a Deployment or DaemonSet.
type workload struct {
	name     string
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func workloads(objs []object) []workload {
	var w []workload
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			w = append(w, workload{v.Name, v.Spec.Selector, v.Spec.Template})
		case *appsv1.DaemonSet:
			w = append(w, workload{v.Name, v.Spec.Selector, v.Spec.Template})
		}
	}
	return w
}

// TestManifestsFitTogether checks the references a strict decode cannot:
// selectors, volumes, ports, probes, names of ConfigMaps and Secrets.
func TestManifestsFitTogether(t *testing.T) {
	objs := manifests(t)
	configMaps, secrets, claims := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.ConfigMap:
			configMaps[v.Name] = true
		case *corev1.Secret:
			secrets[v.Name] = true
		case *cmv1.Certificate:
			secrets[v.Spec.SecretName] = true // cert-manager creates it
		case *corev1.PersistentVolumeClaim:
			claims[v.Name] = true
		}
		if m := metaOf(o.obj); m.Namespace != "avfleet" && o.gvk != "v1/Namespace" {
			t.Errorf("%s %s: namespace %q, want avfleet", o.gvk, m.Name, m.Namespace)
		}
	}
	ws := workloads(objs)
	if len(ws) == 0 {
		t.Fatal("no workloads")
	}
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Matches(labels.Set(w.pod.Labels)) {
				t.Errorf("selector %v does not match the pod template's labels %v", sel, w.pod.Labels)
			}
			vols := map[string]corev1.Volume{}
			for _, v := range w.pod.Spec.Volumes {
				vols[v.Name] = v
				switch {
				case v.ConfigMap != nil && !configMaps[v.ConfigMap.Name]:
					t.Errorf("volume %s: ConfigMap %s is not in the manifests", v.Name, v.ConfigMap.Name)
				case v.Secret != nil && !secrets[v.Secret.SecretName]:
					t.Errorf("volume %s: Secret %s is neither in the manifests nor issued by a Certificate", v.Name, v.Secret.SecretName)
				case v.PersistentVolumeClaim != nil && !claims[v.PersistentVolumeClaim.ClaimName]:
					t.Errorf("volume %s: claim %s is not in the manifests", v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			}
			all := append(slices.Clone(w.pod.Spec.InitContainers), w.pod.Spec.Containers...)
			for _, c := range all {
				for _, m := range c.VolumeMounts {
					if _, ok := vols[m.Name]; !ok {
						t.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
					}
				}
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("container %s: memory request and limit must both be set", c.Name)
				}
				sc := c.SecurityContext
				if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
					sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("container %s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop [ALL]", c.Name)
				}
				for _, p := range probes(c) {
					if p.HTTPGet == nil {
						continue
					}
					if !hasPort(c, p.HTTPGet.Port.String()) {
						t.Errorf("container %s: probe on port %s, which the container does not declare", c.Name, p.HTTPGet.Port.String())
					}
				}
			}
			for _, o := range objs {
				svc, ok := o.obj.(*corev1.Service)
				if !ok || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
					continue
				}
				for _, sp := range svc.Spec.Ports {
					found := false
					for _, c := range w.pod.Spec.Containers {
						found = found || hasPort(c, sp.TargetPort.String())
					}
					if !found {
						t.Errorf("Service %s: targetPort %s is no container port of %s", svc.Name, sp.TargetPort.String(), w.name)
					}
				}
			}
		})
	}
	// Every Service selects some workload.
	for _, o := range objs {
		svc, ok := o.obj.(*corev1.Service)
		if !ok {
			continue
		}
		n := 0
		for _, w := range ws {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", svc.Name, n)
		}
	}
}

func probes(c corev1.Container) []*corev1.Probe {
	var ps []*corev1.Probe
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func hasPort(c corev1.Container, port string) bool {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return true
		}
	}
	return false
}

func portNumber(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %s", c.Name, name)
	return 0
}

// embedded decodes a YAML configuration carried in a ConfigMap.
func embedded(t *testing.T, cm *corev1.ConfigMap, key string) map[string]any {
	t.Helper()
	s, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, key)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("ConfigMap %s: %s: %v", cm.Name, key, err)
	}
	return m
}

func str(t *testing.T, m map[string]any, path string) string {
	t.Helper()
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("config: %s: not a mapping at %s", path, k)
		}
		v = mm[k]
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("config: %s is %T, want a string", path, v)
	}
	return s
}

// mountOf returns the volume mount of c that holds path, the deepest one.
func mountOf(c corev1.Container, path string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	return best
}

func configArg(t *testing.T, c corev1.Container) string {
	t.Helper()
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container %s: no --config FILE in args %v", c.Name, c.Args)
	}
	return c.Args[i+1]
}

func TestMirrorManifest(t *testing.T) {
	objs := manifests(t)
	d := find[appsv1.Deployment](t, objs, "avfleet-mirror")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Error("the mirror is the only writer of its volume: want replicas 1 and strategy Recreate")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args[:2], []string{"mirror", "serve"}) {
		t.Errorf("args %v, want mirror serve ...", c.Args)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("liveness probe must be GET /healthz")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("readiness probe must be GET /readyz")
	}
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the mirror needs no privilege: want runAsNonRoot")
	}

	cm := find[corev1.ConfigMap](t, objs, "avfleet-mirror-config")
	cfgFile := configArg(t, c)
	if m := mountOf(c, cfgFile); m == nil || m.Name != volumeOfConfigMap(t, d.Spec.Template.Spec, cm.Name) ||
		filepath.Base(cfgFile) != "mirror.yaml" {
		t.Errorf("--config %s is not the ConfigMap %s's mirror.yaml", cfgFile, cm.Name)
	}
	cfg := embedded(t, cm, "mirror.yaml")

	// The probes reach admin_listen on the pod IP: it must not be loopback
	// and must be the port the probes use.
	host, port := splitListen(t, str(t, cfg, "admin_listen"))
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("admin_listen %q: the kubelet probes the pod IP; listen on \":6502\"", str(t, cfg, "admin_listen"))
	}
	if want := fmt.Sprint(portNumber(t, c, c.ReadinessProbe.HTTPGet.Port.String())); port != want {
		t.Errorf("admin_listen port %s, probes use %s", port, want)
	}
	if _, p := splitListen(t, str(t, cfg, "listen")); p != fmt.Sprint(portNumber(t, c, "mtls")) {
		t.Errorf("listen port %s is not the container's mtls port", p)
	}

	// Files the configuration names must be where the pod mounts them.
	for _, key := range []string{"tls.cert", "tls.key", "tls.client_ca"} {
		p := str(t, cfg, key)
		m := mountOf(c, p)
		if m == nil || volume(t, d.Spec.Template.Spec, m.Name).Secret == nil {
			t.Errorf("%s %s is not on a Secret volume", key, p)
		}
	}
	dataDir := str(t, cfg, "data_dir")
	if m := mountOf(c, dataDir); m == nil || m.ReadOnly || volume(t, d.Spec.Template.Spec, m.Name).PersistentVolumeClaim == nil {
		t.Errorf("data_dir %s is not on a writable PersistentVolumeClaim", dataDir)
	}
	// The Secret cert-manager issues for the mirror is the one mounted.
	cert := find[cmv1.Certificate](t, objs, "avfleet-mirror")
	tlsVol := volume(t, d.Spec.Template.Spec, mountOf(c, str(t, cfg, "tls.cert")).Name)
	if cert.Spec.SecretName != tlsVol.Secret.SecretName {
		t.Errorf("Certificate avfleet-mirror writes %s, the pod mounts %s", cert.Spec.SecretName, tlsVol.Secret.SecretName)
	}
	svc := find[corev1.Service](t, objs, "avfleet-mirror")
	name := svc.Name + "." + svc.Namespace + ".svc"
	if !slices.Contains(cert.Spec.DNSNames, name) {
		t.Errorf("the mirror's certificate does not name its Service %s", name)
	}
}

func TestAgentManifest(t *testing.T) {
	objs := manifests(t)
	ds := find[appsv1.DaemonSet](t, objs, "avfleet-agent")
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID must be true: container roots are reached as /proc/PID/root")
	}
	c := spec.Containers[0]
	if !slices.Equal(c.Args[:2], []string{"agent", "run"}) {
		t.Errorf("args %v, want agent run ...", c.Args)
	}
	want := []corev1.Capability{"DAC_READ_SEARCH", "SYS_PTRACE", "DAC_OVERRIDE", "FOWNER", "CHOWN"}
	if got := c.SecurityContext.Capabilities.Add; !slices.Equal(got, want) {
		t.Errorf("capabilities add %v, want %v (the set of avfleet-agent.service)", got, want)
	}
	if c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
		t.Error("the agent must not be privileged")
	}

	host := mountOf(c, "/host")
	if host == nil || host.MountPath != "/host" || !host.ReadOnly {
		t.Fatal("the host root must be mounted read-only at /host")
	}
	if v := volume(t, spec, host.Name); v.HostPath == nil || v.HostPath.Path != "/" {
		t.Errorf("/host is not the node's /")
	}

	cm := find[corev1.ConfigMap](t, objs, "avfleet-agent-config")
	cfg := embedded(t, cm, "agent.yaml")
	scan := cfg["scan"].(map[string]any)
	for _, p := range scan["paths"].([]any) {
		if m := mountOf(c, p.(string)); m == nil || m.Name != host.Name {
			t.Errorf("scan.paths %v: not under /host, so not the node's files", p)
		}
	}
	excl := map[string]bool{}
	for _, e := range scan["exclude"].([]any) {
		excl[e.(string)] = true
	}
	for _, e := range []string{"^/host/proc/", "^/host/sys/", "^/host/dev/", "^/host/var/lib/avfleet/"} {
		if !excl[e] {
			t.Errorf("scan.exclude lacks %q (exclude matches the /host/... paths in the pod)", e)
		}
	}
	if a := scan["action"]; a != "notify" && a != "copy" {
		t.Errorf("scan.action %v: /host is read-only, only notify or copy can work", a)
	}
	for _, key := range []string{"state_dir", "scan.quarantine_dir"} {
		p := str(t, cfg, key)
		if m := mountOf(c, p); m == nil || m.ReadOnly {
			t.Errorf("%s %s is not on a writable volume", key, p)
		}
	}
	for _, key := range []string{"mirror.ca", "mirror.cert", "mirror.key"} {
		if mountOf(c, str(t, cfg, key)) == nil {
			t.Errorf("%s %s is on no volume", key, str(t, cfg, key))
		}
	}
	if _, port := splitListen(t, str(t, cfg, "report.metrics_listen")); port != fmt.Sprint(portNumber(t, c, "metrics")) {
		t.Errorf("report.metrics_listen port %s is not the container's metrics port", port)
	}

	// ClamAV's published guidance: clamd with the official databases uses
	// upwards of 1.2 GiB, 2.4 GiB while a concurrent reload holds two
	// engines (on while limits.memory_bytes is 0), and a container should
	// have at least 3 GiB.
	mem := cfg["limits"].(map[string]any)["memory_bytes"]
	if mem == nil || fmt.Sprint(mem) == "0" {
		if lim := c.Resources.Limits.Memory(); lim.Cmp(resource.MustParse("3Gi")) < 0 {
			t.Errorf("memory limit %s: ClamAV recommends at least 3 GiB (2.4 GiB during a concurrent reload)", lim)
		}
	}
	if req := c.Resources.Requests.Memory(); req.Cmp(resource.MustParse("1229Mi")) < 0 {
		t.Errorf("memory request %s: clamd alone uses upwards of 1.2 GiB with the official databases", req)
	}

	// node_name comes from spec.nodeName, through the init container that
	// writes the configuration the agent reads.
	if len(spec.InitContainers) != 1 {
		t.Fatalf("want the node-config init container")
	}
	ic := spec.InitContainers[0]
	if !envFromField(ic, "NODE_NAME", "spec.nodeName") {
		t.Error("init container: NODE_NAME must come from spec.nodeName")
	}
	if cfgFile := configArg(t, c); mountOf(c, cfgFile) == nil || mountOf(ic, cfgFile) == nil ||
		mountOf(c, cfgFile).Name != mountOf(ic, cfgFile).Name {
		t.Errorf("--config %s is not the file the init container writes", cfgFile)
	}
	if !strings.Contains(strings.Join(ic.Command, " "), "$NODE_NAME") {
		t.Error("init container does not use NODE_NAME")
	}
}

func TestNodeCertificateExample(t *testing.T) {
	objs := manifests(t)
	n := 0
	for _, o := range objs {
		c, ok := o.obj.(*cmv1.Certificate)
		if !ok || !slices.Contains(c.Spec.Usages, cmv1.UsageClientAuth) {
			continue
		}
		n++
		node := c.Labels["avfleet.io/node"]
		if node == "" || c.Spec.CommonName != node {
			t.Errorf("Certificate %s: CN %q must be the node name (label avfleet.io/node %q)", c.Name, c.Spec.CommonName, node)
		}
		if c.Spec.SecretName != "avfleet-node-"+node {
			t.Errorf("Certificate %s: secretName %s, want avfleet-node-%s", c.Name, c.Spec.SecretName, node)
		}
	}
	if n == 0 {
		t.Error("no node client Certificate example")
	}
}

func envFromField(c corev1.Container, name, field string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == field {
			return true
		}
	}
	return false
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

func volumeOfConfigMap(t *testing.T, spec corev1.PodSpec, cm string) string {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm {
			return v.Name
		}
	}
	t.Fatalf("no volume of ConfigMap %s", cm)
	return ""
}

func splitListen(t *testing.T, addr string) (host, port string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return h, p
}
