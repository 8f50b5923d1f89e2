package main

import (
	"bytes"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the module root, seen from cmd/popfetch.
const repoRoot = "../.."

// citationTODO lists files allowed to cite documents outside the
// repository while they are being moved; it is empty, and the test fails
// when a listed file no longer needs the exception.
var citationTODO = []string{}

// outsideCitation matches comments that cite a document which is not in
// this repository: the reliability and style notes the project started
// from (named in capitals), and references to an issue tracker by a bare
// number or as "the" one. A comment states the rule itself or points into the repository
// (doc/design.md §N); a public tracker is named with its repository
// (golang/go#78566).
var outsideCitation = regexp.MustCompile(`RELIABILITY|STYLE\.md|\bSTYLE §|(?i:\bthe issue\b)|(?i:\bissues? #?\d)`)

// designCitation matches a citation of doc/design.md's numbered sections,
// possibly broken across comment lines.
var designCitation = regexp.MustCompile(`doc/design\.md\s+§\s*(\d+(?:\.\d+)*)`)

// designHeading matches doc/design.md's numbered headings, "## 3. Title"
// and "### 3.2 Title".
var designHeading = regexp.MustCompile(`(?m)^#{2,4} (\d+(?:\.\d+)*)\.? `)

// goComments returns the text of every comment group of every .go file in
// the repository, keyed by slash path relative to the root, with each
// group's lines joined by spaces so that a citation broken across lines
// is found too.
func goComments(t *testing.T) map[string][]commentText {
	t.Helper()
	files := map[string][]commentText{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != repoRoot && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		files[rel] = []commentText{} // a file without comments is still seen
		for _, g := range f.Comments {
			text := strings.Join(strings.Fields(g.Text()), " ")
			files[rel] = append(files[rel], commentText{line: fset.Position(g.Pos()).Line, text: text})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d .go files under %s; the walk is broken", len(files), repoRoot)
	}
	return files
}

type commentText struct {
	line int
	text string
}

// TestCommentsCiteOnlyThisRepository: a comment that cites a document a
// reader of this repository cannot open (TestCitationPatterns has
// examples) is a dead end. It must state the rule or cite doc/design.md.
func TestCommentsCiteOnlyThisRepository(t *testing.T) {
	t.Parallel()
	files := goComments(t)
	for file, groups := range files {
		var hits []string
		for _, g := range groups {
			if m := outsideCitation.FindString(g.text); m != "" {
				hits = append(hits, file+":"+strconv.Itoa(g.line)+": cites "+m+" in: "+clip(g.text))
			}
		}
		if slices.Contains(citationTODO, file) {
			if len(hits) == 0 {
				t.Errorf("%s cites nothing outside the repository any more: remove it from citationTODO", file)
			}
			continue
		}
		for _, h := range hits {
			t.Errorf("%s\n\tstate the rule itself, or cite doc/design.md §N", h)
		}
	}
	for _, f := range citationTODO {
		if _, ok := files[f]; !ok {
			t.Errorf("citationTODO names %s, which does not exist: remove it", f)
		}
	}
}

// TestDesignSectionsExist: every `doc/design.md §N` cited in a .go comment
// is a numbered heading of doc/design.md, and the README and the package
// docs of fetch, uidl and deliver link the document.
func TestDesignSectionsExist(t *testing.T) {
	t.Parallel()
	design, err := os.ReadFile(filepath.Join(repoRoot, "doc", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range designHeading.FindAllSubmatch(design, -1) {
		sections[string(m[1])] = true
	}
	if len(sections) < 5 {
		t.Fatalf("doc/design.md has only %d numbered headings (%v); designHeading is wrong or the document is", len(sections), sections)
	}
	cited := 0
	for file, groups := range goComments(t) {
		for _, g := range groups {
			for _, m := range designCitation.FindAllStringSubmatch(g.text, -1) {
				cited++
				if !sections[m[1]] {
					t.Errorf("%s:%d cites doc/design.md §%s, which is not a heading there", file, g.line, m[1])
				}
			}
		}
	}
	if cited == 0 {
		t.Errorf("no .go comment cites doc/design.md §N; designCitation is wrong")
	}
	for _, f := range []string{"README.md", "fetch/doc.go", "uidl/doc.go", "deliver/doc.go"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("doc/design.md")) {
			t.Errorf("%s does not link doc/design.md", f)
		}
	}
}

// TestCitationPatterns keeps the two patterns above honest: each must
// catch what it is for and nothing a legitimate comment says.
func TestCitationPatterns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"(RELIABILITY §4)", true},
		{"(RELIABILITY.md §1 step 3)", true},
		{"(STYLE.md §A, mox store/account.go)", true},
		{"the RFC 5322 parser the issue asks for", true},
		{"The issue's proof: a multidrop mailbox", true},
		{"Delivery faults end to end (issue 3)", true},
		{"see issue #12", true},
		{"RFC 1939 §6: some or none", false},
		{"doc/design.md §4", false},
		{"golang/go#78566 (CVE-2026-39820)", false},
		{"getmail6 #105, CVE-2005-4348", false},
		{"format 1 style", false},
		{"a known issue with dovecot 2.3", false},
	} {
		if got := outsideCitation.MatchString(tc.text); got != tc.want {
			t.Errorf("outsideCitation.MatchString(%q) = %v; want %v", tc.text, got, tc.want)
		}
	}
	text := strings.Join(strings.Fields("see doc/design.md\n\t§3.2 and doc/design.md §10"), " ")
	var got []string
	for _, m := range designCitation.FindAllStringSubmatch(text, -1) {
		got = append(got, m[1])
	}
	if want := []string{"3.2", "10"}; !slices.Equal(got, want) {
		t.Errorf("designCitation in %q = %v; want %v", text, got, want)
	}
	var heads []string
	for _, m := range designHeading.FindAllStringSubmatch("# Title\n## 1. One\n### 1.2 Two\ntext ## 3. no\n#### 4 Four\n", -1) {
		heads = append(heads, m[1])
	}
	if want := []string{"1", "1.2", "4"}; !slices.Equal(heads, want) {
		t.Errorf("designHeading = %v; want %v", heads, want)
	}
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// TestReadmeSetUp keeps the README's set-up section and layout table true:
// the two set-up commands exist as written, the README names every step
// .ci/test runs, and every package directory is in the layout table.
func TestReadmeSetUp(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"go run ./cmd/popfetch demo", "sudo bash .ci/run"} {
		if !bytes.Contains(readme, []byte("\n"+cmd+" ")) {
			t.Errorf("README.md lacks the set-up command %q at the start of a line", cmd)
		}
	}
	if !regexp.MustCompile(`(?m)^  demo `).MatchString(usage) {
		t.Errorf("README.md runs `popfetch demo`, but --help lists no demo command")
	}
	run, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^bash \.ci/test\b`).Match(run) {
		t.Errorf(".ci/run does not run .ci/test")
	}
	ciTest, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "test"))
	if err != nil {
		t.Fatal(err)
	}
	// Each step: what .ci/test runs, and how the README names it.
	for _, step := range []struct{ script, readme string }{
		{"\ngo vet ./...", "`go vet`"},
		{"\ngo run \"honnef.co/go/tools/cmd/staticcheck@", "`staticcheck`"},
		{"\ngo mod tidy -diff", "`go mod tidy -diff`"},
		{"\ngo test -race -shuffle=on", "`go test -race -shuffle=on ./...`"},
		{" -fuzz ", "fuzz smoke run"},
	} {
		if !bytes.Contains(ciTest, []byte(step.script)) {
			t.Errorf(".ci/test does not run %q", strings.TrimSpace(step.script))
		} else if !bytes.Contains(readme, []byte(step.readme)) {
			t.Errorf(".ci/test runs %q, but README.md does not say %s", strings.TrimSpace(step.script), step.readme)
		}
	}
	// The layout table: "| `dir` | job |" for every directory holding a
	// non-test .go file (the root package aside: it only embeds the
	// sample mail).
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9/]+)` \\|").FindAllSubmatch(readme, -1) {
		listed[string(m[1])] = true
	}
	dirs := map[string]bool{}
	for file := range goComments(t) {
		if dir := filepath.Dir(file); dir != "." && !strings.HasSuffix(file, "_test.go") {
			dirs[filepath.ToSlash(dir)] = true
		}
	}
	for dir := range dirs {
		if !listed[dir] {
			t.Errorf("README.md's layout table lacks the package %s", dir)
		}
	}
	for dir := range listed {
		if _, err := os.Stat(filepath.Join(repoRoot, dir)); err != nil {
			t.Errorf("README.md's layout table lists %s: %v", dir, err)
		}
	}
}
