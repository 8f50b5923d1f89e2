# A typo in an attribute name: HCL suggests the right one.
account "a" {
  sever         = "pop.example.com"
  username      = "joe"
  password_env  = "PW"
  deliver {
    maildir = "/var/mail/joe"
    mda_timout = "1m"
  }
}
