// Package crashpoint kills the process at a named step, for crash tests
// that must land inside a batch rather than at a random moment: a binary
// built with the build tag "crashtest" reads POPFETCH_CRASH_AT=STEP:N and
// sends itself SIGKILL the Nth time any goroutine reaches STEP (Hit). In
// every other build Hit does nothing and costs nothing, and the variable
// is not read.
//
// The steps (see their callers):
//
//	file-synced   a Maildir copy's tmp/ file is fsynced (deliver)
//	moved         a copy is renamed or linked into new/, new/ not fsynced
//	dir-synced    the fsync of new/ covering a copy returned, its journal
//	              record not yet appended (deliver)
//	journal-synced  a batch's journal fsync returned, its DELEs not sent
//	              (fetch)
package crashpoint
