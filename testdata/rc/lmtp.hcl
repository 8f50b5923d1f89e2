# lmtp.hcl: a multidrop domain handed to Dovecot over LMTP. Dovecot finds
# each user's mailbox and runs Sieve; popfetch only picks the recipients.
# LMTP answers per recipient, so one full mailbox does not refetch the
# message for everybody else.

account "family" {
  server           = "pop.family-mail.example"
  username         = "all@family.example"
  password_command = ["/usr/bin/secret-tool", "lookup", "service", "popfetch"]

  deliver {
    smtp {
      server = "/run/dovecot/lmtp"
      lmtp   = true
    }
  }

  multidrop {
    local_domains   = ["family.example"]
    envelope_header = "X-Original-To"

    user "mum" {
      addresses = ["mum", "anne"]
    }
    user "dad" {
      addresses = ["dad", "tom"]
    }
    user "kids" {
      addresses = ["kids", "lisa", "max"]
    }
  }
}
