// Package delivertest is the test kit for mail delivery: it stands in for
// the far side of a delivery target so that tests of deliver, fetch and
// cmd/popfetch script faults and read what arrived, each double written
// once:
//
//   - Sink: an SMTP or LMTP server (go-smtp) whose replies are scripted per
//     stage (MAIL, RCPT per recipient, DATA, LMTP's per-recipient reply
//     after DATA, a connection dropped in the middle of DATA) and that
//     records every transaction it received.
//   - MDA: a stub delivery program, a /bin/sh script written to a test's
//     temporary directory, that stores each message and its argv per user
//     and fails for a user on demand (exit status, SIGKILL, hang).
//   - MaildirFiles, MaildirMessages, MaildirCount, WaitMaildir and Names:
//     a reader for the messages a Maildir holds in new/ and cur/.
//
// The scripted deliver.Target is in the subpackage fault: this package
// imports no popfetch package, so deliver's own (in-package) tests can use
// it without an import cycle. It is imported by tests only and is never
// linked into cmd/popfetch.
package delivertest
