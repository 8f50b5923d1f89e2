package rcfile

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// fill sets every field reachable from v to a non-zero value, seeded by
// n: pointers get a value, slices one element, strings and numbers n.
func fill(v reflect.Value, n int) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(n%2 == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n))
	case reflect.String:
		v.SetString(strings.Repeat("s", n))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	default:
		panic("fill: no rule for " + v.Type().String())
	}
}

// leaves lists the paths (field indexes from an Account) of every value
// fill sets, stopping at hcl.Range, which is a leaf of its own.
func leaves(t reflect.Type, path []int, out *[][]int, isRange *[]bool) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		leaves(t.Elem(), append(path, 0), out, isRange)
	case reflect.Struct:
		if t == rangeType {
			*out = append(*out, append([]int(nil), path...))
			*isRange = append(*isRange, true)
			return
		}
		for i := range t.NumField() {
			leaves(t.Field(i).Type, append(path, i), out, isRange)
		}
	default:
		*out = append(*out, append([]int(nil), path...))
		*isRange = append(*isRange, false)
	}
}

// at follows path from an *Account to the value it names: a step
// dereferences a pointer, indexes a slice or selects a struct field.
func at(v reflect.Value, path []int) reflect.Value {
	for _, i := range path {
		switch v.Kind() {
		case reflect.Pointer:
			v = v.Elem()
		case reflect.Slice:
			v = v.Index(i)
		default:
			v = v.Field(i)
		}
	}
	return v
}

// TestSameAccountEveryField: every setting an Account holds, at any
// depth, counts in SameAccount; every position (hcl.Range) does not.
// The account is built by reflection, so a field added later is covered
// without touching the test.
func TestSameAccountEveryField(t *testing.T) {
	t.Parallel()
	build := func() *Account {
		a := new(Account)
		fill(reflect.ValueOf(a).Elem(), 1)
		return a
	}
	if !SameAccount(build(), build()) {
		t.Fatal("two identical accounts differ")
	}
	var paths [][]int
	var isRange []bool
	leaves(reflect.TypeFor[*Account](), nil, &paths, &isRange)
	if len(paths) < 40 {
		t.Fatalf("only %d leaves under Account; the walk is broken", len(paths))
	}
	ranges := 0
	for i, p := range paths {
		y := build()
		leaf := at(reflect.ValueOf(y), p)
		if isRange[i] {
			ranges++
			leaf.Set(reflect.ValueOf(hcl.Range{Filename: "elsewhere", Start: hcl.Pos{Line: 99}}))
		} else {
			if !leaf.CanSet() {
				t.Fatalf("leaf %v (%s) cannot be set", p, leaf.Type())
			}
			fill(leaf, 2)
		}
		if got := SameAccount(build(), y); got != isRange[i] {
			t.Errorf("leaf %v (%s) changed: SameAccount = %v; want %v", p, leaf.Type(), got, isRange[i])
		}
	}
	if ranges < 3 {
		t.Errorf("only %d positions under Account; the walk is broken", ranges)
	}
}

type unexported struct {
	a int
	r hcl.Range
}

type cyc struct{ next *cyc }

// TestSame: the kinds the rc file does not produce today follow the
// rules same states.
func TestSame(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	loop := &cyc{}
	loop.next = loop
	loop2 := &cyc{}
	loop2.next = loop2
	f := func() {}
	for _, tc := range []struct {
		name string
		x, y any
		want bool
	}{
		{"nil, nil", nil, nil, true},
		{"nil, value", nil, 1, false},
		{"types differ", int32(1), int64(1), false},
		{"nil and empty slice", []int(nil), []int{}, false},
		{"slices", []int{1, 2}, []int{1, 2}, true},
		{"slice lengths", []int{1, 2}, []int{1}, false},
		{"arrays", [2]string{"a", "b"}, [2]string{"a", "c"}, false},
		{"nil and empty map", map[string]int(nil), map[string]int{}, false},
		{"maps", map[string]int{"a": 1}, map[string]int{"a": 1}, true},
		{"map values", map[string]int{"a": 1}, map[string]int{"a": 2}, false},
		{"map keys", map[string]int{"a": 1}, map[string]int{"b": 1}, false},
		{"interfaces", []any{1, "x"}, []any{1, "x"}, true},
		{"interface types", []any{1}, []any{int64(1)}, false},
		{"nil interface", []any{nil}, []any{1}, false},
		{"NaN", nan, nan, false},
		{"floats", 1.5, 1.5, true},
		{"uints", uint8(1), uint8(2), false},
		{"complex", 1i, 1i, true},
		{"nil funcs", (func())(nil), (func())(nil), true},
		{"funcs", f, f, false},
		{"unexported field", unexported{a: 1}, unexported{a: 2}, false},
		{"unexported range", unexported{a: 1}, unexported{a: 1, r: hcl.Range{Filename: "x"}}, true},
		{"range alone", hcl.Range{Filename: "a"}, hcl.Range{Filename: "b"}, true},
		{"nil pointers", (*Account)(nil), (*Account)(nil), true},
		{"nil and non-nil pointer", (*Account)(nil), &Account{}, false},
		{"cycles", loop, loop2, false},
	} {
		if got := same(tc.x, tc.y); got != tc.want {
			t.Errorf("%s: same = %v; want %v", tc.name, got, tc.want)
		}
		if got := same(tc.y, tc.x); got != tc.want {
			t.Errorf("%s, swapped: same = %v; want %v", tc.name, got, tc.want)
		}
	}
}
