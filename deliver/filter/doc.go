// Package filter runs a fetched message through spam and virus filters
// and returns their verdict, with the header changes they asked for, as
// data: milters (the Sendmail milter protocol, through
// github.com/d--j/go-milter's client, confined to this package) and
// command filters (a program with the message on stdin and the possibly
// changed message on stdout, run under the MDA's rules).
//
// A filter sees the message as the provider's MX received it: the client
// address, reverse name and HELO come from the trusted Received: field
// (TrustedReceived; RFC 5321 §4.4), not from popfetch's own POP3
// connection, so that SPF, DNS blocklists and HELO checks judge the real
// sender. Everything taken from the message is validated to be a plain
// host name or address before it reaches a milter; nothing from a header
// ever becomes a program argument or a path.
//
// Apply writes the filtered copy (the changes applied) as a stream, with
// memory bounded by the header size (MaxHeaderBytes).
package filter
