// Package alert tells a person about trouble the daemon cannot fix by
// itself: an account on authentication hold, polls or deliveries failing
// for longer than an alert block's `after`, a server that refuses DELE,
// a rejected reload of the rc file, a failed OAuth2 token refresh or a
// refresh token near the expiry its provider gave, an account not polled
// successfully for `after`, a keep-mode mailbox
// growing beyond its thresholds.
//
// Each condition is raised once when it starts and cleared once when it
// ends (a recovery notice), never repeated per poll, and rate-limited
// (RenotifyAfter, MaxPerHour). Engine decides this, purely: time comes
// in with every call, notices come out. Alerter runs it for the daemon:
// it keeps the engine's memory and the queue of unsent notices in the
// state file (StateFile, replaced atomically, mode 0600), so a restart
// neither raises an active condition again nor loses a notice, and it
// sends from its own goroutine with retries (an alert that cannot be
// delivered is logged at ERROR and retried with backoff, and never holds
// up polling or a reload).
//
// A notice is an RFC 5322 message (Compose) delivered through package
// deliver's Maildir or SMTP/LMTP target, durably like any other copy,
// and/or one JSON document (JSON) on the stdin of a command run without a
// shell.
package alert
