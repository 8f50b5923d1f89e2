package deliver

import (
	"strings"
	"testing"
)

func TestReturnPath(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"Return-Path: <bounce@example.org>\r\nFrom: a@x\r\n\r\nbody", "bounce@example.org"},
		{"From: a@x\r\nReturn-Path:\r\n <folded@example.org>\r\n\r\n", "folded@example.org"},
		{"Return-Path: <>\r\n\r\n", ""},
		{"From: a@x\r\n\r\nReturn-Path: <in-body@example.org>\r\n", ""},
		{"Return-Path: <a@x>\r\nReturn-Path: <b@x>\r\n\r\n", "a@x"},
		{"Return-Path: not an address\r\n\r\n", ""},
		{"Return-Path: <" + strings.Repeat("a", 600) + "@x>\r\n\r\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := ReturnPath([]byte(tt.raw)); got != tt.want {
			t.Errorf("ReturnPath(%q) = %q; want %q", tt.raw, got, tt.want)
		}
	}
}
