# Values of the wrong type: a string port, a list where a bool goes.
account "a" {
  server       = "pop.example.com"
  port         = "pop3s"
  keep         = ["yes"]
  username     = "joe"
  password_env = "PW"
  deliver {
    maildir = "/var/mail/joe"
  }
}
