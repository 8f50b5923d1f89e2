# multidrop.hcl: a small company's whole domain in one catch-all POP3
# mailbox. The provider adds Delivered-To: with the real recipient at the
# top of each copy, so Bcc and mailing-list mail reach the right person.
# Each user gets /var/vmail/example.com/USER/Maildir; mail that matches no
# user goes to the postmaster's Maildir with an X-Popfetch-Reason header.

state_dir = "/var/lib/popfetch"

account "example.com" {
  server        = "pop.provider.example"
  username      = "catchall@example.com"
  password_file = "/etc/popfetch/example.com.password"

  deliver {
    maildir = "/var/vmail/{domain}/{user}/Maildir"
  }

  postmaster {
    maildir = "/var/vmail/example.com/postmaster/Maildir"
  }

  multidrop {
    local_domains   = ["example.com", "*.example.com"]
    envelope_header = "Delivered-To"
    envelope_count  = 1 # trust only the provider's own, topmost line

    user "alice" {
      addresses = ["alice", "a.smith", "sales"]
    }
    user "bob" {
      addresses = ["bob", "b.jones@example.com", "support"]
    }
    user "carol" {
      addresses = ["carol", "billing", "invoices@example.com"]
    }
    user "dave" {
      addresses = ["dave", "webmaster", "dave@lists.example.com"]
    }
  }
}
