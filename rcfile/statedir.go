package rcfile

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// StateDirOf returns the state directory the rc file at path names, even
// when the rest of the file is invalid: `popfetch now` and `popfetch status`
// need only that to find a running daemon's control socket, and an operator
// asks for them precisely while the daemon runs on an older, valid version
// of a file that is now broken. Only a top-level state_dir that parses and
// evaluates is used; otherwise the default.
func StateDirOf(path string) (string, error) {
	return stateDirOf(path, os.Geteuid())
}

// stateDirOf is StateDirOf for a process whose effective user ID is euid
// (see parseAs).
func stateDirOf(path string, euid int) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	p := newParser(path, euid)
	// A syntax error elsewhere in the file must not hide state_dir: the
	// daemon keeps running on its last good configuration while the
	// file is broken, and that is when status is asked for. The parser
	// recovers past the error and returns the attributes it could read.
	if f, _ := hclsyntax.ParseConfig(src, path, hcl.InitialPos); f != nil && f.Body != nil {
		content, _, _ := f.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "state_dir"}}})
		if attr, ok := content.Attributes["state_dir"]; ok {
			v, diags := attr.Expr.Value(p.ctx)
			if !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
				if dir, ok := p.path(v.AsString(), attr.Range); ok {
					return dir, nil
				}
			}
		}
	}
	dir, err := defaultStateDir(euid)
	if err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return dir, nil
}
