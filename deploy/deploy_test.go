package deploy

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// These tests check the deployment artifacts statically: nothing here runs
// Docker, Kubernetes, Flink or Dataflow (deploy/portable runs the pipelines
// through a job server). What each test does and does not establish is in
// its doc comment and in README.md, "What is validated".

const repoRoot = ".."

// --- shared helpers ---------------------------------------------------------

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goModVersions returns the go directive and the Beam SDK version of go.mod.
func goModVersions(t *testing.T) (goVersion, beamVersion string) {
	t.Helper()
	mod := readFile(t, filepath.Join(repoRoot, "go.mod"))
	if m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(mod); m != nil {
		goVersion = m[1]
	}
	if m := regexp.MustCompile(`(?m)^\s*github\.com/apache/beam/sdks/v2 v(\S+)`).FindStringSubmatch(mod); m != nil {
		beamVersion = m[1]
	}
	if goVersion == "" || beamVersion == "" {
		t.Fatalf("go.mod: go directive %q, beam version %q: want both", goVersion, beamVersion)
	}
	return goVersion, beamVersion
}

// goCmd runs the go command in the repo root and returns its stdout.
func goCmd(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// knownFlags returns every flag a pipeline binary defines: its own
// (pipelines/<p>/main.go, internal/options) and Beam's (runner, job options,
// GCP options, the Dataflow runner's), read from the sources in the module
// cache so that the names are the real ones.
func knownFlags(t *testing.T) map[string]bool {
	t.Helper()
	beamDir := strings.TrimSpace(goCmd(t, nil, "list", "-m", "-f", "{{.Dir}}", "github.com/apache/beam/sdks/v2"))
	files := []string{
		filepath.Join(repoRoot, "pipelines", "dispatch", "main.go"),
		filepath.Join(repoRoot, "pipelines", "registry", "main.go"),
		filepath.Join(repoRoot, "pipelines", "feedback", "main.go"),
		filepath.Join(repoRoot, "internal", "options", "options.go"),
	}
	for _, f := range []string{"runners/flag.go", "options/jobopts/options.go", "options/gcpopts/options.go", "runners/dataflow/dataflow.go"} {
		files = append(files, filepath.Join(beamDir, "go", "pkg", "beam", filepath.FromSlash(f)))
	}
	definers := map[string]bool{
		"String": true, "Bool": true, "Int": true, "Int64": true, "Uint": true, "Duration": true, "Float64": true, "Var": true, "Func": true, "BoolFunc": true,
		"StringVar": true, "BoolVar": true, "IntVar": true, "Int64Var": true, "UintVar": true, "DurationVar": true, "Float64Var": true,
	}
	flags := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !definers[sel.Sel.Name] {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || (x.Name != "flag" && x.Name != "fs") {
				return true
			}
			for _, a := range call.Args[:min(2, len(call.Args))] {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if name, err := strconv.Unquote(lit.Value); err == nil {
						flags[name] = true
					}
					break
				}
			}
			return true
		})
	}
	for _, want := range []string{"runner", "endpoint", "environment_type", "worker_binary", "project", "sdk_container_image", "kafka_brokers", "apns_key_file"} {
		if !flags[want] {
			t.Fatalf("flag collection found no --%s: the flag sources moved (found %d flags)", want, len(flags))
		}
	}
	return flags
}

var flagArgRE = regexp.MustCompile(`^--([a-z][a-z0-9_]*)(=|$)`)

// --- the YAML subset parser itself -----------------------------------------

func TestParseYAML(t *testing.T) {
	good := []struct {
		name, src string
		want      string // fmt of the documents
	}{
		{"mapping", "a: 1\nb:\n  c: x # comment\n", "[map[a:1 b:map[c:x]]]"},
		{"sequence of mappings", "l:\n  - name: a\n    v: 1\n  - name: b\n", "[map[l:[map[name:a v:1] map[name:b]]]]"},
		{"sequence at key indent", "l:\n- a\n- b\nk: v\n", "[map[k:v l:[a b]]]"},
		{"flow and quotes", "a: [\"x\", 'y', z]\nb: \"q: r\"\nc: {}\n", "[map[a:[x y z] b:q: r c:map[]]]"},
		{"block scalar", "f: |\n  x: 1\n  # kept\n\n  y\ng: h\n", "[map[f:x: 1\n# kept\n\ny\n g:h]]"},
		{"documents", "a: 1\n---\n# only a comment\n---\nb: 2\n", "[map[a:1] map[b:2]]"},
		{"flags and urls", "args:\n  - --flink-master=svc:8081\n  - --x=$(Y)\nu: file:///a/b\n", "[map[args:[--flink-master=svc:8081 --x=$(Y)] u:file:///a/b]]"},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := parseYAML(tt.src)
			if err != nil {
				t.Fatalf("parseYAML(%q) error: %v", tt.src, err)
			}
			if got := fmtYAML(docs); got != tt.want {
				t.Errorf("parseYAML(%q) = %s, want %s", tt.src, got, tt.want)
			}
		})
	}
	bad := map[string]string{
		"duplicate key":    "a: 1\na: 2\n",
		"tab indent":       "a:\n\tb: 1\n",
		"bad indent":       "a: 1\n  b: 2\n",
		"plain with colon": "a: b: c\n",
		"yaml 1.1 bool":    "a: yes\n",
		"anchor":           "a: &x 1\n",
		"alias":            "a: *x\n",
		"flow mapping":     "a: {b: 1}\n",
		"no key":           "just text\n",
		"unterminated":     "a: [1, 2\n",
	}
	for name, src := range bad {
		t.Run("rejects "+name, func(t *testing.T) {
			if docs, err := parseYAML(src); err == nil {
				t.Errorf("parseYAML(%q) = %s, want an error", src, fmtYAML(docs))
			}
		})
	}
}

// fmtYAML prints parsed documents with sorted map keys.
func fmtYAML(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fmtYAML(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + fmtYAML(v[k])
		}
		return "map[" + strings.Join(parts, " ") + "]"
	case nil:
		return "<nil>"
	}
	return v.(string)
}

// --- Kubernetes objects ----------------------------------------------------

type object struct {
	file string
	m    map[string]any
}

func (o object) kind() string { return str(o.m, "kind") }
func (o object) name() string { return str(o.m, "metadata", "name") }
func (o object) String() string {
	return o.file + ": " + o.kind() + "/" + o.name()
}

// get walks maps by key; an int-looking key indexes a sequence.
func get(v any, keys ...string) any {
	for _, k := range keys {
		switch c := v.(type) {
		case map[string]any:
			v = c[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func strs(v any, keys ...string) []string {
	var out []string
	for _, e := range list(v, keys...) {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// named returns the element of a sequence of mappings with name.
func named(l []any, name string) map[string]any {
	for _, e := range l {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// expand replaces Kubernetes $(VAR) references with vars.
func expand(t *testing.T, s string, vars map[string]string) string {
	t.Helper()
	return regexp.MustCompile(`\$\(([A-Z_][A-Z0-9_]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := vars[name]
		if !ok {
			t.Errorf("%s: $(%s) is not defined by the container's env or envFrom", s, name)
		}
		return v
	})
}

// mountFor returns the volume mount of container c under which p lies.
func mountFor(c map[string]any, p string) map[string]any {
	var best map[string]any
	for _, e := range list(c, "volumeMounts") {
		m, _ := e.(map[string]any)
		mp := str(m, "mountPath")
		if mp != "" && (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) {
			if best == nil || len(mp) > len(str(best, "mountPath")) {
				best = m
			}
		}
	}
	return best
}

func loadObjects(t *testing.T, files []string) []object {
	t.Helper()
	var objs []object
	for _, f := range files {
		docs, err := parseYAML(readFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, d := range docs {
			m, ok := d.(map[string]any)
			if !ok {
				t.Fatalf("%s: document %d is not a mapping", f, i+1)
			}
			o := object{file: filepath.Base(f), m: m}
			if str(m, "apiVersion") == "" || o.kind() == "" {
				t.Errorf("%s: document %d: apiVersion and kind are required", f, i+1)
			}
			if o.kind() != "Kustomization" && o.name() == "" {
				t.Errorf("%s: document %d (%s): metadata.name is required", f, i+1, o.kind())
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	t.Fatalf("no %s/%s in the manifests", kind, name)
	return object{}
}

// TestFlinkManifests parses every manifest in flink/ (the YAML subset above,
// strictly), checks the fields every object needs, and checks that the
// objects fit together: the job server's Flink and Beam versions, the
// session cluster's checkpointing, the Service the submit Jobs point at,
// the worker-pool sidecar, and that every file a worker reads (APNs key,
// delivery table) is on a volume mounted into the sidecar, from the Secret
// for the key. It does not validate against the Kubernetes or Flink
// operator schemas (no cluster or CRDs here); with kubectl installed it also
// runs `kubectl kustomize flink` (kubectl's YAML parser and kustomize's
// resource checks, offline).
func TestFlinkManifests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("flink", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in flink/: %v", err)
	}
	objs := loadObjects(t, files)
	_, beamVersion := goModVersions(t)
	flags := knownFlags(t)

	// kustomization: applies everything but the Secret template and the
	// submit Jobs (applying those is a deliberate, separate step).
	kust := find(t, objs, "Kustomization", "")
	var resources []string
	for _, r := range strs(kust.m, "resources") {
		resources = append(resources, r)
		if _, err := os.Stat(filepath.Join("flink", r)); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
	}
	for _, f := range files {
		base := filepath.Base(f)
		deliberate := base == "secret.template.yaml" || strings.HasPrefix(base, "submit-")
		if base == "kustomization.yaml" {
			continue
		}
		if in := slices.Contains(resources, base); in == deliberate {
			t.Errorf("%s: in kustomization resources = %v, want %v", base, in, !deliberate)
		}
	}

	// The session cluster.
	fd := find(t, objs, "FlinkDeployment", "pushflow-flink")
	if got := str(fd.m, "apiVersion"); got != "flink.apache.org/v1beta1" {
		t.Errorf("FlinkDeployment apiVersion = %q, want flink.apache.org/v1beta1", got)
	}
	if get(fd.m, "spec", "job") != nil {
		t.Errorf("FlinkDeployment has spec.job: want a session cluster (Beam's job server submits the jobs)")
	}
	flinkVersion := str(fd.m, "spec", "flinkVersion") // v1_20
	flinkMinor := strings.ReplaceAll(strings.TrimPrefix(flinkVersion, "v"), "_", ".")
	if !regexp.MustCompile(`^\d+\.\d+$`).MatchString(flinkMinor) {
		t.Fatalf("FlinkDeployment spec.flinkVersion = %q, want vX_Y", flinkVersion)
	}
	if img := str(fd.m, "spec", "image"); !strings.HasPrefix(img, "flink:"+flinkMinor) {
		t.Errorf("FlinkDeployment image %q is not Flink %s", img, flinkMinor)
	}
	conf, _ := get(fd.m, "spec", "flinkConfiguration").(map[string]any)
	wantConf := map[string]string{
		"execution.checkpointing.mode":                              "EXACTLY_ONCE",
		"state.backend.type":                                        "rocksdb",
		"execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
	}
	for k, v := range wantConf {
		if got := str(conf, k); got != v {
			t.Errorf("FlinkDeployment flinkConfiguration[%s] = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"execution.checkpointing.interval", "state.checkpoints.dir", "state.savepoints.dir"} {
		if str(conf, k) == "" {
			t.Errorf("FlinkDeployment flinkConfiguration has no %s", k)
		}
	}

	// TaskManager pod: Flink's container and the Go SDK worker pool.
	tmSpec := get(fd.m, "spec", "taskManager", "podTemplate", "spec")
	tmMain := named(list(tmSpec, "containers"), "flink-main-container")
	sidecar := named(list(tmSpec, "containers"), "beam-worker-pool")
	if tmMain == nil || sidecar == nil {
		t.Fatalf("TaskManager pod template: want containers flink-main-container and beam-worker-pool")
	}
	if got := strs(sidecar, "args"); !slices.Equal(got, []string{"--worker_pool"}) {
		t.Errorf("beam-worker-pool args = %q, want [--worker_pool] (Beam's boot as a worker pool)", got)
	}
	if get(sidecar, "command") != nil {
		t.Errorf("beam-worker-pool overrides the command: the image's entrypoint (Beam's boot) must stay")
	}
	poolPort := str(sidecar, "ports", "0", "containerPort")
	image := str(sidecar, "image")
	volumes := list(tmSpec, "volumes")
	pvcs := map[string]bool{}
	for _, o := range objs {
		if o.kind() == "PersistentVolumeClaim" {
			pvcs[o.name()] = true
			if modes := strs(o.m, "spec", "accessModes"); !slices.Equal(modes, []string{"ReadWriteMany"}) {
				t.Errorf("%s: accessModes %q, want [ReadWriteMany] (mounted by several pods)", o, modes)
			}
		}
	}
	for _, spec := range []any{tmSpec, get(fd.m, "spec", "jobManager", "podTemplate", "spec")} {
		for _, v := range list(spec, "volumes") {
			if c := str(v, "persistentVolumeClaim", "claimName"); c != "" && !pvcs[c] {
				t.Errorf("volume %s claims %s: no such PersistentVolumeClaim in the manifests", str(v, "name"), c)
			}
		}
	}

	// Beam's Flink job server.
	jsDep := find(t, objs, "Deployment", "pushflow-beam-job-server")
	jsPod := get(jsDep.m, "spec", "template", "spec")
	js := named(list(jsPod, "containers"), "job-server")
	wantImage := "apache/beam_flink" + flinkMinor + "_job_server:" + beamVersion
	if got := str(js, "image"); got != wantImage {
		t.Errorf("job server image = %q, want %q (Flink of the session cluster, Beam of go.mod)", got, wantImage)
	}
	jsArgs := strs(js, "args")
	if v, _ := flagValue(jsArgs, "flink-master"); v != fd.name()+"-rest:8081" {
		t.Errorf("job server --flink-master = %q, want %s-rest:8081 (the operator's REST service)", v, fd.name())
	}
	if v, _ := flagValue(jsArgs, "job-host"); v != "$(POD_IP)" || str(named(list(js, "env"), "POD_IP"), "valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
		t.Errorf("job server --job-host = %q: want $(POD_IP) from status.podIP (the artifact endpoint is advertised as job-host:artifact-port)", v)
	}
	artifacts, _ := flagValue(jsArgs, "artifacts-dir")
	for who, c := range map[string]map[string]any{"job server": js, "TaskManager": tmMain} {
		m := mountFor(c, artifacts)
		if artifacts == "" || m == nil {
			t.Errorf("%s does not mount --artifacts-dir %q", who, artifacts)
			continue
		}
		pod := jsPod
		if who == "TaskManager" {
			pod = tmSpec
		}
		if claim := str(named(list(pod, "volumes"), str(m, "name")), "persistentVolumeClaim", "claimName"); claim != "pushflow-beam-artifacts" {
			t.Errorf("%s mounts %s from claim %q, want pushflow-beam-artifacts (shared with the %s)", who, artifacts, claim, map[bool]string{true: "TaskManagers", false: "job server"}[who == "job server"])
		}
	}
	confDir, _ := flagValue(jsArgs, "flink-conf-dir")
	cm := mountFor(js, confDir)
	cmName := str(named(list(jsPod, "volumes"), str(cm, "name")), "configMap", "name")
	jsConf := find(t, objs, "ConfigMap", cmName)
	confDocs, err := parseYAML(str(jsConf.m, "data", "config.yaml"))
	if err != nil || len(confDocs) != 1 {
		t.Fatalf("ConfigMap %s config.yaml: %v", cmName, err)
	}
	for k, v := range conf {
		if !strings.HasPrefix(k, "execution.checkpointing.") && !strings.HasPrefix(k, "state.") {
			continue
		}
		if got := str(confDocs[0], k); got != v {
			t.Errorf("job server config.yaml %s = %q, FlinkDeployment has %q: keep them in step", k, got, v)
		}
	}
	svc := find(t, objs, "Service", "pushflow-beam-job-server")
	for k, v := range get(svc.m, "spec", "selector").(map[string]any) {
		if str(jsDep.m, "spec", "template", "metadata", "labels", k) != v {
			t.Errorf("Service %s selector %s=%v does not select the job server pods", svc.name(), k, v)
		}
	}
	if str(svc.m, "spec", "ports", "0", "port") != "8099" {
		t.Errorf("Service %s does not expose the JobService port 8099", svc.name())
	}

	// The credentials Secret template.
	secret := find(t, objs, "Secret", "pushflow-credentials")
	credVol := ""
	for _, v := range volumes {
		if str(v, "secret", "secretName") == secret.name() {
			credVol = str(v, "name")
		}
	}
	if credVol == "" {
		t.Errorf("no TaskManager volume mounts Secret %s", secret.name())
	}
	for k, v := range get(secret.m, "stringData").(map[string]any) {
		if s, _ := v.(string); !strings.Contains(s, "REPLACE") || strings.Contains(s, "PRIVATE KEY") {
			t.Errorf("secret template key %s holds something other than a REPLACE placeholder", k)
		}
	}

	// The submit Jobs.
	submits := 0
	for _, o := range objs {
		if o.kind() != "Job" {
			continue
		}
		submits++
		pod := get(o.m, "spec", "template", "spec")
		if str(o.m, "spec", "backoffLimit") != "0" || str(pod, "restartPolicy") != "Never" {
			t.Errorf("%s: want backoffLimit 0 and restartPolicy Never (a retry would submit a second streaming job)", o)
		}
		c, _ := list(pod, "containers")[0].(map[string]any)
		if got := str(c, "image"); got != image {
			t.Errorf("%s: image %q, want the worker-pool image %q (the staged worker is the submitter's binary)", o, got, image)
		}
		cmd := strs(c, "command")
		if len(cmd) != 1 || !strings.HasPrefix(cmd[0], "/opt/pushflow/bin/") {
			t.Fatalf("%s: command %q, want one /opt/pushflow/bin/<pipeline>", o, cmd)
		}
		vars := map[string]string{}
		for _, e := range list(c, "envFrom") {
			cmo := find(t, objs, "ConfigMap", str(e, "configMapRef", "name"))
			for k, v := range get(cmo.m, "data").(map[string]any) {
				vars[k], _ = v.(string)
			}
		}
		for _, e := range list(c, "env") {
			vars[str(e, "name")] = str(e, "value")
		}
		var args []string
		for _, a := range strs(c, "args") {
			m := flagArgRE.FindStringSubmatch(a)
			if m == nil {
				t.Errorf("%s: argument %q is not --flag[=value]", o, a)
				continue
			}
			if !flags[m[1]] {
				t.Errorf("%s: --%s is not a flag of the pipeline binaries or Beam", o, m[1])
			}
			args = append(args, expand(t, a, vars))
		}
		want := map[string]string{
			"runner":             "universal",
			"endpoint":           svc.name() + ":8099",
			"environment_type":   "EXTERNAL",
			"environment_config": "localhost:" + poolPort,
			"worker_binary":      cmd[0],
		}
		for k, v := range want {
			if got, _ := flagValue(args, k); got != v {
				t.Errorf("%s: --%s=%q, want %q", o, k, got, v)
			}
		}
		if !slices.Contains(args, "--async") {
			t.Errorf("%s: no --async: the Job would run as long as the streaming job", o)
		}
		// Files the workers open must be on the sidecar's volumes.
		if key, ok := flagValue(args, "apns_key_file"); ok {
			m := mountFor(sidecar, key)
			if m == nil || str(m, "name") != credVol {
				t.Errorf("%s: --apns_key_file %s is not on the sidecar's mount of Secret %s", o, key, secret.name())
			} else if _, ok := get(secret.m, "stringData", path.Base(key)).(string); !ok {
				t.Errorf("%s: --apns_key_file %s: Secret %s has no key %s", o, key, secret.name(), path.Base(key))
			}
		}
		if table, ok := flagValue(args, "delivery_table"); ok {
			dir, isFile := strings.CutPrefix(table, "file://")
			if m := mountFor(sidecar, dir); isFile && (m == nil || str(named(volumes, str(m, "name")), "persistentVolumeClaim", "claimName") == "") {
				t.Errorf("%s: --delivery_table %s is not on a volume the sidecar mounts from a claim", o, table)
			}
		}
		for _, a := range args {
			if strings.Contains(a, "PRIVATE KEY") || strings.Contains(strings.ToLower(a), "password=") {
				t.Errorf("%s: a secret is passed as a flag: %.30q…", o, a)
			}
		}
	}
	if submits == 0 {
		t.Errorf("no submit Job in flink/")
	}

	// kubectl's own parse, offline, when kubectl is installed.
	if kubectl, err := exec.LookPath("kubectl"); err != nil {
		t.Log("kubectl not installed: `kubectl kustomize` check skipped")
	} else {
		out, err := exec.Command(kubectl, "kustomize", "flink").CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize flink: %v\n%s", err, out)
		} else if n, want := strings.Count(string(out), "\nkind: ")+strings.Count(string(out)[:min(6, len(out))], "kind: "), len(objs)-submits-2; n < want {
			// -2: the Kustomization itself and the Secret template.
			t.Errorf("kubectl kustomize flink rendered %d objects, want %d", n, want)
		}
	}
}

// --- the container image ----------------------------------------------------

type instruction struct {
	cmd, args string
	line      int
}

// parseDockerfile returns the instructions of a Dockerfile: comments and
// parser directives dropped, continuation lines joined.
func parseDockerfile(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(t, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(t)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " "), start})
		cur.Reset()
	}
	return out
}

// ignored reports whether a context path (slash-separated) is excluded by
// .dockerignore patterns, with Docker's rules for the patterns used here:
// the last matching pattern wins, "!" re-includes, a pattern matching a
// parent directory matches everything under it, "**" matches any number of
// path segments.
func ignored(patterns []string, p string) bool {
	ex := false
	for _, pat := range patterns {
		neg := strings.HasPrefix(pat, "!")
		pat = strings.TrimPrefix(pat, "!")
		segs := strings.Split(p, "/")
		for i := 1; i <= len(segs); i++ {
			if globMatch(strings.Split(pat, "/"), segs[:i]) {
				ex = !neg
				break
			}
		}
	}
	return ex
}

func globMatch(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if globMatch(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], segs[0])
	return err == nil && ok && globMatch(pat[1:], segs[1:])
}

// TestDockerfile checks container/Dockerfile and its ignore file without
// building (there is no Docker engine here): the versions against go.mod;
// that the final stage is Beam's Go SDK image with its entrypoint kept and no
// RUN (the base is distroless); that the binaries copied in are the ones the
// build stage builds, as static binaries, from main packages that exist; and
// that the ignore rules let in every Go file the pipelines compile from while
// keeping keys, certificates and run outputs out. It does not pull images or
// run the build; the static build itself is the command the Dockerfile runs,
// checked by `go list` with CGO_ENABLED=0 here.
func TestDockerfile(t *testing.T) {
	goVersion, beamVersion := goModVersions(t)
	ins := parseDockerfile(readFile(t, filepath.Join("container", "Dockerfile")))

	args := map[string]string{} // global ARGs (before the first FROM)
	type stage struct {
		from, name string
		ins        []instruction
	}
	var stages []*stage
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := &stage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.name = f[i+1]
					i++
				default:
					st.from = f[i]
				}
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case len(stages) == 0:
			t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	if args["BEAM_VERSION"] != beamVersion {
		t.Errorf("ARG BEAM_VERSION=%s, go.mod has Beam %s", args["BEAM_VERSION"], beamVersion)
	}
	if !versionAtLeast(args["GO_VERSION"], goVersion) {
		t.Errorf("ARG GO_VERSION=%s is older than go.mod's go %s", args["GO_VERSION"], goVersion)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, harness)", len(stages))
	}
	build, final := stages[0], stages[1]
	if build.from != "golang:${GO_VERSION}" || build.name == "" {
		t.Errorf("first stage FROM %s AS %s, want golang:${GO_VERSION} AS <name>", build.from, build.name)
	}
	if final.from != "apache/beam_go_sdk:${BEAM_VERSION}" {
		t.Errorf("final stage FROM %s, want apache/beam_go_sdk:${BEAM_VERSION}", final.from)
	}

	// The build stage: what it copies from the context and what it builds.
	built := map[string]bool{}
	for _, in := range build.ins {
		switch in.cmd {
		case "COPY", "ADD":
			f := strings.Fields(in.args)
			for _, src := range f[:len(f)-1] {
				if strings.HasPrefix(src, "--") {
					continue
				}
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("line %d: COPY source %s: %v", in.line, src, err)
				}
			}
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			if !strings.Contains(in.args, "CGO_ENABLED=0") {
				t.Errorf("line %d: go build without CGO_ENABLED=0", in.line)
			}
			m := regexp.MustCompile(`-o (\S+/) ((?:\./\S+ ?)+)`).FindStringSubmatch(in.args)
			if m == nil {
				t.Errorf("line %d: want `go build ... -o DIR/ ./pkg ...`", in.line)
				continue
			}
			for _, pkg := range strings.Fields(m[2]) {
				main := filepath.Join(repoRoot, filepath.FromSlash(pkg), "main.go")
				if !strings.Contains(readFile(t, main), "\npackage main\n") {
					t.Errorf("%s is not a main package", pkg)
				}
				built[m[1]+path.Base(pkg)] = true
			}
		}
	}

	// The final stage: COPY --from=build of the built binaries, nothing that
	// needs a shell, Beam's entrypoint kept.
	copied := 0
	for _, in := range final.ins {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) < 3 || f[0] != "--from="+build.name {
				t.Errorf("line %d: COPY %s: want COPY --from=%s", in.line, in.args, build.name)
				continue
			}
			for _, src := range f[1 : len(f)-1] {
				if !built[src] {
					t.Errorf("line %d: COPY --from=%s %s: the build stage does not build it", in.line, build.name, src)
				}
				copied++
			}
			if dst := f[len(f)-1]; dst != "/opt/pushflow/bin/" {
				t.Errorf("line %d: binaries go to %s, want /opt/pushflow/bin/ (the manifests' paths)", in.line, dst)
			}
		case "LABEL", "ENV", "ARG":
		default:
			t.Errorf("line %d: %s in the harness stage: the base is distroless (no shell) and its entrypoint (Beam's boot) must stay", in.line, in.cmd)
		}
	}
	if copied != len(built) || copied == 0 {
		t.Errorf("harness stage copies %d binaries, the build stage builds %d", copied, len(built))
	}

	// The ignore file.
	var patterns []string
	for _, l := range strings.Split(readFile(t, filepath.Join("container", "Dockerfile.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	needed := []string{"go.mod", "go.sum"}
	list := goCmd(t, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, "list", "-e", "-deps",
		"-f", `{{if .Error}}ERROR {{.ImportPath}}: {{.Error}}{{"\n"}}{{end}}{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./pipelines/registry", "./pipelines/dispatch", "./pipelines/feedback")
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		if strings.HasPrefix(l, "ERROR ") {
			t.Errorf("CGO_ENABLED=0 GOOS=linux GOARCH=amd64: %s", l)
			continue
		}
		rel, err := filepath.Rel(root, l)
		if err != nil {
			t.Fatal(err)
		}
		needed = append(needed, filepath.ToSlash(rel))
	}
	if len(needed) < 20 {
		t.Fatalf("found only %d files the pipelines build from", len(needed))
	}
	for _, p := range needed {
		if ignored(patterns, p) {
			t.Errorf("the ignore file excludes %s, which the pipelines build from", p)
		}
	}
	for _, p := range []string{
		"AuthKey_ABC123DEFG.p8", "connectors/apnsio/dev.p8", "pipelines/dispatch/cert.p12", "ca.pem", "x/tls.key",
		".env", ".git/config", "bin/dispatch", ".pushflow-run/stack/apns-dev-key.p8", "deploy/flink/secret.template.yaml",
		"testdata/devices.jsonl", "pipelines/dispatch/dispatch_test.go",
	} {
		if !ignored(patterns, p) {
			t.Errorf("the ignore file lets %s into the build context", p)
		}
	}
}

// versionAtLeast compares dotted numeric versions.
func versionAtLeast(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := 0; i < max(len(h), len(w)); i++ {
		var a, b int
		if i < len(h) {
			a, _ = strconv.Atoi(h[i])
		}
		if i < len(w) {
			b, _ = strconv.Atoi(w[i])
		}
		if a != b {
			return a > b
		}
	}
	return true
}

func TestIgnored(t *testing.T) {
	pats := []string{"*", "!go.mod", "!*.go", "!pipelines", "**/*_test.go", "**/*.p8"}
	for p, want := range map[string]bool{
		"go.mod": false, "go.sum": true, "records.go": false, "pipelines/dispatch/main.go": false,
		"pipelines/dispatch/main_test.go": true, "pipelines/x.p8": true, "a.p8": true, "deploy/README.md": true, "deploy": true,
	} {
		if got := ignored(pats, p); got != want {
			t.Errorf("ignored(%q) = %v, want %v", p, got, want)
		}
	}
}

// --- Dataflow --------------------------------------------------------------

// TestDataflowScript checks dataflow/run-dispatch.sh with `bash -n`, runs
// its input checks (they exit before building or submitting anything), and
// checks that every flag it passes is one the dispatch binary defines (its
// own or Beam's Dataflow runner's, from the sources). Nothing is submitted:
// there is no GCP project here.
func TestDataflowScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	script := filepath.Join("dataflow", "run-dispatch.sh")
	if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
	if fi, err := os.Stat(script); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", script)
	}

	env := []string{
		"PATH=" + os.Getenv("PATH"), "PROJECT=p", "REGION=europe-west1", "BUCKET=gs://b/pushflow",
		"IMAGE=europe-docker.pkg.dev/p/pushflow/pushflow-beam:t", "KAFKA_BROKERS=k:9092", "REDIS_ADDR=r:6379",
		"APNS_KEY_FILE=/var/run/secrets/pushflow/apns-key.p8", "APNS_KEY_ID=KEYID12345", "APNS_TEAM_ID=TEAMID1234",
	}
	without := func(name string) []string {
		return slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, name+"=") })
	}
	with := func(kv string) []string {
		k, _, _ := strings.Cut(kv, "=")
		return append(without(k), kv)
	}
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"no project":       {without("PROJECT"), "set PROJECT"},
		"no image":         {without("IMAGE"), "set IMAGE"},
		"bucket not gcs":   {with("BUCKET=/tmp/x"), "BUCKET must be a gs:// URL"},
		"key file on gcs":  {with("APNS_KEY_FILE=gs://b/key.p8"), "must be a local path on the workers"},
		"no apns team id":  {without("APNS_TEAM_ID"), "set APNS_TEAM_ID"},
		"no kafka brokers": {without("KAFKA_BROKERS"), "set KAFKA_BROKERS"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bash, script)
			cmd.Env = tc.env
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Errorf("run-dispatch.sh with %s: err %v, output %q; want exit 2 and %q", name, err, out, tc.want)
			}
		})
	}

	src := readFile(t, script)
	flags := knownFlags(t)
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:args\+=\(|\[\[.*\]\] \|\| args\+=\()?\s*(--[a-z][a-z0-9_]*)`).FindAllStringSubmatch(src, -1) {
		name := strings.TrimPrefix(m[1], "--")
		seen[name] = true
		if !flags[name] {
			t.Errorf("run-dispatch.sh passes --%s: not a flag of dispatch or Beam", name)
		}
	}
	for _, m := range regexp.MustCompile(`args\+=\(([^)]*)\)`).FindAllStringSubmatch(src, -1) {
		for _, a := range strings.Fields(m[1]) {
			if fm := flagArgRE.FindStringSubmatch(a); fm != nil {
				seen[fm[1]] = true
				if !flags[fm[1]] {
					t.Errorf("run-dispatch.sh passes --%s: not a flag of dispatch or Beam", fm[1])
				}
			}
		}
	}
	for _, want := range []string{"runner", "project", "region", "staging_location", "temp_location", "sdk_container_image", "experiments", "worker_binary", "kafka_brokers", "redis_addr", "apns_key_file", "apns_key_id", "apns_team_id", "async"} {
		if !seen[want] {
			t.Errorf("run-dispatch.sh does not pass --%s", want)
		}
	}
	for _, want := range []string{"--runner=dataflow", "--experiments=use_runner_v2,enable_streaming_engine"} {
		if !strings.Contains(src, want) {
			t.Errorf("run-dispatch.sh does not pass %s", want)
		}
	}
}
