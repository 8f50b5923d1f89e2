//go:build race

package testutil

// Race is true when the tests run with the race detector (-race), which
// makes code several times slower.
const Race = true
