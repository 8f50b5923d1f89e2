# Only global settings, out of range, and no account at all.
max_parallel = 0
per_server   = -1
defaults {
  keep = true
}
defaults {
  keep = false
}
