package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Listen opens addr as metrics_listen means it (rcfile.CheckMetricsListen
// has validated it): an absolute path is a unix socket, made mode 0660
// and removed when the listener is closed; anything else is a TCP
// host:port. A stale socket file at the path (left by a crash) is
// replaced; any other file there is an error, never removed.
func Listen(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "/") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(addr); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("metrics_listen %s: exists and is not a socket", addr)
		}
		if c, err := net.Dial("unix", addr); err == nil {
			c.Close()
			return nil, fmt.Errorf("metrics_listen %s: another process is serving on it", addr)
		}
		if err := os.Remove(addr); err != nil {
			return nil, fmt.Errorf("metrics_listen %s: remove stale socket: %w", addr, err)
		}
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w", addr, err)
	}
	// The umask decides the mode the socket is created with; narrow it to
	// owner and group at once. (Changing the umask instead would race
	// with every other file the daemon creates.)
	if err := os.Chmod(addr, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("metrics_listen %s: chmod: %w", addr, err)
	}
	return ln, nil
}

// Server serves a Handler on the address metrics_listen names, and moves
// it when a reload changes the address.
type Server struct {
	h   http.Handler
	log *slog.Logger

	mu   sync.Mutex
	addr string
	srv  *http.Server
	ln   net.Listener
}

// NewServer returns a Server of h that listens nowhere yet.
func NewServer(h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{h: h, log: log}
}

// Set serves on addr ("" = nowhere). The same address as now changes
// nothing; another closes the old listener first (so that a unix socket
// path can be reused) and opens the new one. On error nothing listens.
func (s *Server) Set(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if addr == s.addr && (addr == "" || s.srv != nil) {
		return nil
	}
	s.closeLocked()
	s.addr = addr
	if addr == "" {
		return nil
	}
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	s.srv, s.ln = srv, ln
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server", "addr", addr, "err", err)
		}
	}()
	s.log.Info("metrics listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address served on, nil if none.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops serving; a unix socket file is removed.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	s.addr = ""
}

func (s *Server) closeLocked() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	s.srv, s.ln = nil, nil
}
