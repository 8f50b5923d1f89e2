package rcfile

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"testing"
)

// schemaNames walks the decode structs the way the decoder does and
// returns every attribute and block name, with the struct it belongs to.
func schemaNames(t reflect.Type, seen map[reflect.Type]bool, out map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if seen[t] {
		return
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, kind := fieldTag(f)
		switch kind {
		case "attr", "optional":
			out[name] = t.Name()
		case "block":
			out[name] = t.Name()
			schemaNames(f.Type, seen, out)
		}
	}
}

// TestManPageCoversSchema fails when an attribute or block of the schema
// is not described in man/popfetch.hcl.5, so the manual cannot silently
// fall behind the code. A name counts as described when a .B or .BR
// request starts with it (how the page introduces each term).
func TestManPageCoversSchema(t *testing.T) {
	man, err := os.ReadFile("../man/popfetch.hcl.5")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	seen := map[reflect.Type]bool{}
	schemaNames(reflect.TypeOf(fileHCL{}), seen, names)
	// account and defaults bodies are decoded separately into settingsHCL.
	schemaNames(reflect.TypeOf(settingsHCL{}), seen, names)
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
