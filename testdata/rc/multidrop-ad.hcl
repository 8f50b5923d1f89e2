# multidrop-ad.hcl: a company whose people and addresses live in Active
# Directory (or Samba AD). The provider's catch-all mailbox is split by the
# directory: the mail and proxyAddresses (smtp:/SMTP: values) of each
# enabled user route to /var/vmail/example.com/SAMACCOUNTNAME/Maildir, and
# a group's address reaches every member. popfetch binds as a read-only
# service account over LDAPS and reads the directory every 5 minutes; while
# no domain controller answers, the last good copy serves for a day.

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
    local_domains = ["example.com"]

    ldap {
      url                = "ldaps://dc1.example.com"
      ca_file            = "/etc/popfetch/example-ca.pem" # the domain's AD CS root
      bind_dn            = "CN=popfetch,OU=Service Accounts,DC=example,DC=com"
      password_file      = "/etc/popfetch/ldap.password"
      base_dn            = "DC=example,DC=com"
      user_attribute     = "sAMAccountName"
      address_attributes = ["mail", "proxyAddresses"]
      groups             = true
    }
  }
}
