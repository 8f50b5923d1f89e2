package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popfetch/popfetch/rcfile"
)

// readmeFilterSection is the README section of the filter recipes.
const readmeFilterSection = "Spam and virus filtering"

// TestReadmeFilterExamples: every ```hcl block of the README's "Spam and
// virus filtering" section is a complete rc file that parses without an
// error, and so is every ```hcl block elsewhere in the README that has a
// filter or trusted_received block and an account: the recipes are the
// syntax popfetch reads. While the section is not written yet, the test
// checks the other blocks and says so in its log.
func TestReadmeFilterExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	headRE := regexp.MustCompile(`(?m)^## (.*)$`)
	text := string(b)
	heads := headRE.FindAllStringSubmatchIndex(text, -1)
	found, checked := false, 0
	for i, h := range heads {
		title := strings.TrimSpace(text[h[2]:h[3]])
		end := len(text)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		body := text[h[1]:end]
		recipes := strings.EqualFold(title, readmeFilterSection)
		if recipes {
			found = true
		}
		blocks := hclBlockRE.FindAllStringSubmatch(body, -1)
		if recipes && len(blocks) == 0 {
			t.Errorf("README section %q has no ```hcl block", title)
		}
		for j, m := range blocks {
			src := m[1]
			filters := regexp.MustCompile(`(?m)^\s*(filter\s+"|trusted_received\s*\{)`).MatchString(src)
			if !recipes && !(filters && strings.Contains(src, "account \"")) {
				continue
			}
			checked++
			name := filepath.Join("/etc/popfetch", strings.NewReplacer(" ", "-", "/", "-").Replace(title)+"-"+string(rune('1'+j))+".hcl")
			cfg, diags := rcfile.Parse([]byte(src), name)
			if diags.HasErrors() {
				var out strings.Builder
				rcfile.WriteDiagnostics(&out, diags, nil)
				t.Errorf("README section %q, hcl block %d does not parse:\n%s\n%s", title, j+1, out.String(), src)
				continue
			}
			if recipes && filters {
				n := 0
				for _, a := range cfg.Accounts {
					n += len(a.Filters)
				}
				if n == 0 && strings.Contains(src, "filter \"") {
					t.Errorf("README section %q, hcl block %d: no account has the filters it shows", title, j+1)
				}
			}
		}
	}
	if !found {
		t.Logf("README.md has no section %q yet; checked the %d other hcl blocks with filters", readmeFilterSection, checked)
	}
}
