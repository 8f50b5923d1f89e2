# tls takes one of three words.
account "a" {
  server       = "pops://pop.example.com"
  tls          = "ssl"
  username     = "joe"
  password_env = "PW"
  deliver {
    smtp {
      server = "localhost"
      tls    = "yes"
    }
  }
}
