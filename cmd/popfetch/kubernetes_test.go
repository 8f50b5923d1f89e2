package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// TestKubernetesExample keeps doc/kubernetes/ consistent: the ConfigMap
// holds popfetch.hcl as it is, the rc file is valid, the shard count of
// POPFETCH_SHARD_FROM_HOSTNAME equals the replicas, every password_file
// is a key of the Secret in the directory the prepare step copies them
// to, and the pod runs as non-root with a volume per replica.
func TestKubernetesExample(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot, "doc", "kubernetes")
	hcl, err := os.ReadFile(filepath.Join(dir, "popfetch.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "popfetch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := string(b)

	// The ConfigMap's literal block: the lines after "popfetch.hcl: |",
	// indented by 4, up to the next document.
	_, block, ok := strings.Cut(yaml, "  popfetch.hcl: |\n")
	if !ok {
		t.Fatal("popfetch.yaml has no ConfigMap key popfetch.hcl")
	}
	block, _, _ = strings.Cut(block, "\n---\n")
	var cm strings.Builder
	for _, l := range strings.Split(block, "\n") {
		cm.WriteString(strings.TrimPrefix(l, "    ") + "\n")
	}
	if cm.String() != string(hcl) {
		t.Errorf("the ConfigMap in popfetch.yaml differs from popfetch.hcl:\n%s", cm.String())
	}

	cfg, diags := rcfile.Parse(hcl, "/etc/popfetch/popfetch.hcl")
	if diags.HasErrors() {
		t.Fatalf("popfetch.hcl: %v", diags)
	}
	for _, a := range cfg.Accounts {
		f := a.Password.File
		if filepath.Dir(f) != "/etc/popfetch" || !regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(filepath.Base(f))+`: `).MatchString(yaml) {
			t.Errorf("account %s: password_file %s is not a key of the Secret copied to /etc/popfetch", a.Name, f)
		}
	}
	if cfg.StateDir != "/var/lib/popfetch" || !strings.Contains(yaml, "mountPath: /var/lib/popfetch\n              subPath: state") {
		t.Errorf("state_dir %s is not the mount of the replica's volume", cfg.StateDir)
	}

	replicas := regexp.MustCompile(`(?m)^  replicas: (\d+)$`).FindStringSubmatch(yaml)
	shards := regexp.MustCompile(`name: POPFETCH_SHARD_FROM_HOSTNAME\n\s+value: "(\d+)"`).FindStringSubmatch(yaml)
	if replicas == nil || shards == nil || replicas[1] != shards[1] {
		t.Errorf("replicas %v and POPFETCH_SHARD_FROM_HOSTNAME %v differ", replicas, shards)
	}
	for _, want := range []string{"kind: StatefulSet", "volumeClaimTemplates:", "runAsNonRoot: true", "defaultMode: 0400",
		"readOnlyRootFilesystem: true", "No livenessProbe"} {
		if !strings.Contains(yaml, want) {
			t.Errorf("popfetch.yaml lacks %q", want)
		}
	}
	if strings.Contains(yaml, "livenessProbe:") {
		t.Errorf("popfetch.yaml has a livenessProbe, but popfetch has no health endpoint")
	}
}
