// Package daemon keeps popfetch's accounts polled: it schedules one poll
// (a fetch.Poller session, or any PollFunc) per account at its interval,
// with backoff, authentication holds and the session limits, applies a
// reloaded rc file to the running schedule, and answers `popfetch now`
// and `popfetch status` on a private control socket. The poll of one
// account is package fetch's; this package never talks POP3 itself and
// fetch never imports it. It exposes the status as data (Status); the
// command line renders it.
//
// Log keys (stable, as in package fetch): account, server, user, err,
// path, messages, new, delivered, deleted, skipped, failed, undeletable,
// elapsed; the scheduler adds failures, retry_in, previous_err,
// generation, polls, limit, accounts, panic, stack; the control socket
// uid (of a client refused).
package daemon
