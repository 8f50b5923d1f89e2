package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/popfetch/popfetch/deliver/filter/filtertest"
)

// popfetchBin is the real binary, built once for the tests that run it as
// a separate process (crash safety, the daemon).
var popfetchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "popfetch-bin-")
	if err != nil {
		panic(err)
	}
	popfetchBin = filepath.Join(dir, "popfetch")
	build := exec.Command("go", "build", "-o", popfetchBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building popfetch: " + err.Error())
	}
	code := m.Run()
	filtertest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}
