package rcfile

import (
	"fmt"
	"reflect"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decodeBody decodes body into the schema struct v points to with
// gohcl.DecodeBody, plus two rules gohcl does not keep:
//
//   - A block that the schema allows once and that appears again is
//     reported at the repeat, and the first one is still decoded.
//     gohcl decodes neither, so a second deliver block would also bring
//     "Missing deliver block", or the defaults' deliver block inherited
//     in silence (see dropRepeatedBlocks).
//   - A value that fails to decode is reported once, in the words of
//     someone who writes config ("port must be a whole number", not
//     "Unsuitable value: a number is required"), and leaves its field
//     unset. gohcl may have set the field to a zero value before it
//     failed, which a later check would then report as a second error
//     about a value nobody wrote ("port must be between 1 and 65535, not
//     0"), and after an expression that fails to evaluate it adds
//     "value must be known" (see fixDecodeErrors).
func decodeBody(body hcl.Body, ctx *hcl.EvalContext, v any) hcl.Diagnostics {
	val := reflect.ValueOf(v).Elem()
	diags := dropRepeatedBlocks(body, val.Type())
	diags = append(diags, gohcl.DecodeBody(body, ctx, v)...)
	return fixDecodeErrors(diags, val, body, ctx)
}

// dropRepeatedBlocks reports every repeat of a block that schema struct t
// takes at most once, and removes it from the syntax tree (which Parse
// owns), in body and in the blocks nested in it. Blocks with the wrong
// number of labels are left to gohcl, which reports and skips them, so
// they do not count as the first.
func dropRepeatedBlocks(body hcl.Body, t reflect.Type) hcl.Diagnostics {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil // every body here comes from hclsyntax
	}
	type blockType struct {
		t      reflect.Type
		once   bool
		labels int
	}
	var diags hcl.Diagnostics
	types := map[string]blockType{}
	for i := range t.NumField() {
		switch name, kind := fieldTag(t.Field(i)); kind {
		case "block":
			et, once := blockElem(t.Field(i))
			labels := 0
			for j := range et.NumField() {
				if _, kind := fieldTag(et.Field(j)); kind == "label" {
					labels++
				}
			}
			types[name] = blockType{et, once, labels}
		case "remain":
			// The same body, decoded again into the remain struct.
			diags = append(diags, dropRepeatedBlocks(body, t.Field(i).Type)...)
		}
	}
	first := map[string]*hclsyntax.Block{}
	kept := make([]*hclsyntax.Block, 0, len(b.Blocks))
	for _, blk := range b.Blocks {
		bt, known := types[blk.Type]
		if !known || len(blk.Labels) != bt.labels {
			kept = append(kept, blk)
			continue
		}
		if prev := first[blk.Type]; prev != nil && bt.once {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Duplicate %s block", blk.Type),
				Detail:   fmt.Sprintf("Only one %s block is allowed; one was already declared at %s.", blk.Type, prev.DefRange()),
				Subject:  blk.DefRange().Ptr(),
			})
			continue
		}
		first[blk.Type] = blk
		kept = append(kept, blk)
		diags = append(diags, dropRepeatedBlocks(blk.Body, bt.t)...)
	}
	b.Blocks = kept
	return diags
}

// unsuitable is the summary of gohcl's error for a value it cannot
// convert to the field's type (TestBad's wrong_type.hcl pins it).
const unsuitable = "Unsuitable value type"

// fixDecodeErrors visits every attribute decoded into val (a schema
// struct) and its blocks. An attribute with an error inside it is left
// unset; gohcl's unsuitable-type error becomes "Wrong type" at the whole
// value, or is dropped when evaluating the value already failed.
func fixDecodeErrors(diags hcl.Diagnostics, val reflect.Value, body hcl.Body, ctx *hcl.EvalContext) hcl.Diagnostics {
	if !diags.HasErrors() {
		return diags
	}
	drop := map[*hcl.Diagnostic]bool{}
	var visit func(s reflect.Value)
	visit = func(s reflect.Value) {
		t := s.Type()
		for _, a := range attrFields(t) {
			f := s.Field(a.val)
			if a.rng < 0 || f.Type() == exprType {
				continue // an expression is not evaluated by gohcl
			}
			rng := s.Field(a.rng).Interface().(hcl.Range)
			if !isSet(rng) {
				continue // absent
			}
			var wrong *hcl.Diagnostic
			failed := false
			for _, d := range diags {
				if d.Severity != hcl.DiagError || d.Subject == nil || !within(*d.Subject, rng) {
					continue
				}
				if d.Summary == unsuitable && d.Context != nil {
					wrong = d
				} else {
					failed = true
				}
			}
			if wrong == nil && !failed {
				continue
			}
			f.Set(reflect.Zero(f.Type()))
			switch {
			case wrong == nil:
			case failed:
				drop[wrong] = true
			default:
				ty, err := gocty.ImpliedType(f.Addr().Interface())
				if err != nil {
					panic(fmt.Sprintf("rcfile: bad schema field for %s: %v", a.name, err)) // a bug in this package
				}
				wrong.Summary = "Wrong type"
				wrong.Detail = fmt.Sprintf("%s must be %s.", a.name, typeWords(ty))
				if e := attrExpr(body, a.name, rng); a.name == "mda" && e != nil {
					// fetchmail's mda is one command line.
					if v, d := e.Value(ctx); !d.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
						wrong.Detail = "mda is a list: the program and each argument as a string of its own, run without a shell. Here: " + mdaListHint(v.AsString()) + "."
					}
				}
				wrong.Subject, wrong.Context = wrong.Context, nil // the whole value, not its first token
			}
		}
		for i := range t.NumField() {
			_, kind := fieldTag(t.Field(i))
			switch f := s.Field(i); {
			case kind == "remain" && f.Kind() == reflect.Struct:
				visit(f)
			case kind != "block":
			case f.Kind() == reflect.Pointer:
				if !f.IsNil() {
					visit(f.Elem())
				}
			case f.Kind() == reflect.Slice:
				for j := range f.Len() {
					visit(f.Index(j).Elem())
				}
			}
		}
	}
	visit(val)
	out := diags[:0]
	for _, d := range diags {
		if !drop[d] {
			out = append(out, d)
		}
	}
	return out
}

var exprType = reflect.TypeFor[hcl.Expression]()

// attrExpr finds the expression of the attribute name set at rng in body
// or a block nested in it, or nil.
func attrExpr(body hcl.Body, name string, rng hcl.Range) hcl.Expression {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	if a, ok := b.Attributes[name]; ok && a.SrcRange == rng {
		return a.Expr
	}
	for _, blk := range b.Blocks {
		if e := attrExpr(blk.Body, name, rng); e != nil {
			return e
		}
	}
	return nil
}

// within says whether r lies inside outer.
func within(r, outer hcl.Range) bool {
	return r.Filename == outer.Filename && r.Start.Byte >= outer.Start.Byte && r.End.Byte <= outer.End.Byte
}

// typeWords describes a cty type for someone who writes config, not Go.
func typeWords(ty cty.Type) string {
	switch {
	case ty == cty.String:
		return `a string in double quotes, e.g. "value"`
	case ty == cty.Number:
		return "a whole number"
	case ty == cty.Bool:
		return "true or false"
	case ty.IsListType() && ty.ElementType() == cty.String:
		return `a list of strings, e.g. ["a", "b"]`
	}
	return ty.FriendlyName()
}
