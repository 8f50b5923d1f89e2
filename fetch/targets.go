package fetch

import (
	"crypto/x509"
	"fmt"

	"github.com/popfetch/popfetch/deliver"
	"github.com/popfetch/popfetch/internal/trust"
	"github.com/popfetch/popfetch/rcfile"
)

func newMDATarget(d *rcfile.Destination, host string) (deliver.Target, error) {
	return deliver.NewMDA(d.MDA, deliver.MDAOptions{Timeout: d.MDATimeout, AllowStderr: d.MDAAllowStderr, TempExitCodes: d.MDATempExitCodes, LocalHost: host})
}

func newSMTPTarget(s *rcfile.SMTP, host string) (deliver.Target, error) {
	o := deliver.SMTPOptions{
		Addr:      s.Server,
		LMTP:      s.LMTP,
		Helo:      s.Helo,
		TLS:       string(s.TLS),
		Sender:    s.Sender,
		Timeout:   s.Timeout,
		LocalHost: host,
	}
	if s.CAFile != "" {
		pem, err := trust.ReadTrusted(s.CAFile) // trust anchors: see fetch/session.go
		if err != nil {
			return nil, fmt.Errorf("smtp ca_file: %w", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smtp ca_file %s holds no PEM certificate", s.CAFile)
		}
	}
	return deliver.NewSMTP(o), nil
}
