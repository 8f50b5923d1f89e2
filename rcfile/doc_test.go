package rcfile

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"testing"
)

// TestManPageCoversSchema fails when an attribute or block of the schema
// is not described in man/popfetch.hcl.5, so the manual cannot silently
// fall behind the code. A name counts as described when a .B or .BR
// request starts with it (how the page introduces each term).
func TestManPageCoversSchema(t *testing.T) {
	t.Parallel()
	man, err := os.ReadFile("../man/popfetch.hcl.5")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	walkSchema(reflect.TypeFor[fileHCL](), func(owner reflect.Type, name, _ string) {
		names[name] = owner.Name()
	})
	if len(names) < 40 {
		t.Fatalf("found only %d schema names; is the walk broken?", len(names))
	}
	var missing []string
	for name, owner := range names {
		re := regexp.MustCompile(`(?m)^\.BR? ` + regexp.QuoteMeta(name) + `(\s|$)`)
		if !re.Match(man) {
			missing = append(missing, name+" ("+owner+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("man/popfetch.hcl.5 does not describe %s", m)
	}
}
