# Two users claim the same address, once as a local part and once in
# full, and a user is declared twice.
account "a" {
  server       = "pop.example.com"
  username     = "all"
  password_env = "PW"
  deliver {
    maildir = "/var/vmail/{user}"
  }
  multidrop {
    local_domains = ["example.com"]
    user "alice" {
      addresses = ["alice", "sales"]
    }
    user "bob" {
      addresses = ["bob", "Sales@Example.COM"]
    }
    user "alice" {
      addresses = ["alice2"]
    }
  }
}
