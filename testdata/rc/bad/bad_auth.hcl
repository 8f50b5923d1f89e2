# auth names one mechanism; LOGIN and CRAM-MD5 are not among them.
defaults {
  auth = "cram-md5"
}
account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver {
    maildir = "/var/mail/joe/"
  }
}
account "b" {
  server       = "pop.example.com"
  username     = "ann"
  password_env = "PW"
  auth         = "login"
  deliver {
    maildir = "/var/mail/ann/"
  }
}
