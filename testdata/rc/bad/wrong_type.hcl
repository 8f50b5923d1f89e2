# Values of the wrong type: a string port, a list where a bool goes, a
# fraction where a count goes, a string where an argv list goes. Each is
# reported once, without follow-up errors about the value it could not be.
account "a" {
  server           = "pop.example.com"
  port             = "pop3s"
  keep             = ["yes"]
  fetch_limit      = 2.5
  username         = "joe"
  password_command = "pass show mail"
  deliver {
    maildir = "/var/mail/joe"
  }
}
