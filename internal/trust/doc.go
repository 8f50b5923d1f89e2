// Package trust decides whether popfetch may use a file: one that only
// root or the user popfetch runs as can change, through the file itself
// or any directory or symlink on the way to it. The rc file names
// commands popfetch runs with its own rights and the files that choose
// the credentials sent and who receives the mail (password_file,
// aliases_file, ca_file), so whoever could write any of them could act
// as popfetch. The rc file loader applies these rules when it reads a
// file, and the MDA target applies CheckPath again right before it runs
// a program.
package trust
