// Package sockpeek tells whether a connection's socket holds bytes not yet
// read, without reading them or waiting. Both protocol clients use it to
// check that a server sent nothing where no reply is due (a stray reply
// would otherwise be read as the answer to the next command): package fetch
// for POP3, package deliver for SMTP and LMTP.
package sockpeek
