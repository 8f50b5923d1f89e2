# A CR in the user name would end the USER command early and let the
# rest be read as a second command.
account "a" {
  server       = "pop.example.com\n"
  username     = "joe\r\nDELE 1"
  password     = "x\u0000y"
  deliver {
    maildir = "/var/mail/joe"
  }
}
