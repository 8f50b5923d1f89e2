# Placeholders other than {user} {address} {domain} {sender}.
account "a" {
  server       = "pop.example.com"
  username     = "joe"
  password_env = "PW"
  deliver {
    mda = ["/usr/bin/procmail", "-d", "{recipient}", "-f", "from={from}"]
  }
  postmaster {
    maildir = "/var/mail/{address}"
  }
}
