# A missing closing quote and brace.
account "a" {
  server = "pop.example.com
  username = "joe"
