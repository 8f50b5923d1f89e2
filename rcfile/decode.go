package rcfile

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decodeBody is a small subset of gohcl.DecodeBody driven by the same
// struct tags (attr, optional, block, label, remain, def_range,
// label_range, attr_range).
//
// Why not gohcl itself: in hcl v2.25.0 package gohcl imports hclwrite,
// which needs github.com/google/go-cmp, and that module is not in this
// repository's go.sum (adding it is a go.mod change outside rcfile). The
// parts users see are unaffected: unknown attributes and blocks, with
// "Did you mean" suggestions, are reported by hclsyntax's Body.Content,
// exactly as under gohcl. If go-cmp is added later, this file can be
// replaced by gohcl.DecodeBody without touching the schema.
func decodeBody(body hcl.Body, ctx *hcl.EvalContext, v any) hcl.Diagnostics {
	val := reflect.ValueOf(v).Elem()
	t := val.Type()
	schema, remain := bodySchema(t)
	var content *hcl.BodyContent
	var leftovers hcl.Body
	var diags hcl.Diagnostics
	if remain >= 0 {
		content, leftovers, diags = body.PartialContent(schema)
		val.Field(remain).Set(reflect.ValueOf(&leftovers).Elem())
	} else {
		content, diags = body.Content(schema)
	}
	if content == nil {
		return diags
	}
	blocks := content.Blocks.ByType()
	for i := 0; i < t.NumField(); i++ {
		name, kind := fieldTag(t.Field(i))
		f := val.Field(i)
		switch kind {
		case "attr", "optional":
			attr := content.Attributes[name]
			if attr == nil {
				if f.Type() == exprType {
					f.Set(reflect.ValueOf(hcl.StaticExpr(cty.NullVal(cty.DynamicPseudoType), body.MissingItemRange())))
				}
				continue
			}
			if f.Type() == exprType {
				f.Set(reflect.ValueOf(attr.Expr))
				continue
			}
			diags = append(diags, decodeAttr(attr, ctx, f)...)
		case "attr_range":
			if attr := content.Attributes[name]; attr != nil {
				f.Set(reflect.ValueOf(attr.Range))
			}
		case "block":
			diags = append(diags, decodeBlocks(name, blocks[name], ctx, f)...)
		}
	}
	return diags
}

var exprType = reflect.TypeOf((*hcl.Expression)(nil)).Elem()

func fieldTag(f reflect.StructField) (name, kind string) {
	tag, ok := f.Tag.Lookup("hcl")
	if !ok {
		return "", ""
	}
	name, kind, found := strings.Cut(tag, ",")
	if !found {
		kind = "attr"
	}
	return name, kind
}

// bodySchema derives the hcl.BodySchema from the tags; remain is the index
// of the remain field or -1.
func bodySchema(t reflect.Type) (*hcl.BodySchema, int) {
	s := &hcl.BodySchema{}
	remain := -1
	for i := 0; i < t.NumField(); i++ {
		name, kind := fieldTag(t.Field(i))
		switch kind {
		case "attr", "optional":
			s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: name, Required: kind == "attr"})
		case "block":
			et := t.Field(i).Type
			for et.Kind() == reflect.Slice || et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: name, LabelNames: labelNames(et)})
		case "remain":
			remain = i
		}
	}
	return s, remain
}

func labelNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if name, kind := fieldTag(t.Field(i)); kind == "label" {
			names = append(names, name)
		}
	}
	return names
}

// decodeAttr evaluates one attribute into f (a pointer or plain Go value).
func decodeAttr(attr *hcl.Attribute, ctx *hcl.EvalContext, f reflect.Value) hcl.Diagnostics {
	v, diags := attr.Expr.Value(ctx)
	if diags.HasErrors() {
		return diags
	}
	ty, err := gocty.ImpliedType(f.Addr().Interface())
	if err != nil {
		panic(fmt.Sprintf("rcfile: bad schema field for %s: %v", attr.Name, err)) // a bug in this package
	}
	bad := func() hcl.Diagnostics {
		return append(diags, &hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     "Wrong type",
			Detail:      fmt.Sprintf("%s must be %s.", attr.Name, typeWords(ty)),
			Subject:     attr.Expr.Range().Ptr(),
			Expression:  attr.Expr,
			EvalContext: ctx,
		})
	}
	if !v.IsWhollyKnown() {
		return bad()
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		return bad()
	}
	// Decode into a fresh value: gocty may allocate the pointer before it
	// fails, and a half-set field would trigger follow-up errors
	// ("port must be between 1 and 65535, not 0") about a value the user
	// never wrote.
	tmp := reflect.New(f.Type())
	if err := gocty.FromCtyValue(cv, tmp.Interface()); err != nil {
		return bad()
	}
	f.Set(tmp.Elem())
	return diags
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

// decodeBlocks decodes the blocks of one type into a *struct (at most one
// block) or a []*struct field.
func decodeBlocks(typeName string, blocks hcl.Blocks, ctx *hcl.EvalContext, f reflect.Value) hcl.Diagnostics {
	var diags hcl.Diagnostics
	isSlice := f.Kind() == reflect.Slice
	elem := f.Type()
	if isSlice {
		elem = elem.Elem()
	}
	if !isSlice && len(blocks) > 1 {
		for _, b := range blocks[1:] {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Duplicate %s block", typeName),
				Detail:   fmt.Sprintf("Only one %s block is allowed here; one was already declared at %s.", typeName, blocks[0].DefRange),
				Subject:  b.DefRange.Ptr(),
			})
		}
		blocks = blocks[:1]
	}
	for _, b := range blocks {
		ptr := reflect.New(elem.Elem())
		diags = append(diags, decodeBlock(b, ctx, ptr)...)
		if isSlice {
			f.Set(reflect.Append(f, ptr))
		} else {
			f.Set(ptr)
		}
	}
	return diags
}

func decodeBlock(b *hcl.Block, ctx *hcl.EvalContext, ptr reflect.Value) hcl.Diagnostics {
	val := ptr.Elem()
	t := val.Type()
	li := 0
	labelIdx := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name, kind := fieldTag(t.Field(i))
		switch kind {
		case "label":
			// hclsyntax has already checked the label count.
			if li < len(b.Labels) {
				val.Field(i).SetString(b.Labels[li])
				labelIdx[name] = li
			}
			li++
		case "def_range":
			val.Field(i).Set(reflect.ValueOf(b.DefRange))
		}
	}
	for i := 0; i < t.NumField(); i++ {
		if name, kind := fieldTag(t.Field(i)); kind == "label_range" {
			if j, ok := labelIdx[name]; ok && j < len(b.LabelRanges) {
				val.Field(i).Set(reflect.ValueOf(b.LabelRanges[j]))
			}
		}
	}
	return decodeBody(b.Body, ctx, ptr.Interface())
}
