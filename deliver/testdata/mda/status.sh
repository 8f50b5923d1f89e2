#!/bin/sh
# Test MDA: reads all of stdin, writes $STDERR to stderr, exits $CODE.
cat > /dev/null
if [ -n "$STDERR" ]; then printf '%s\n' "$STDERR" >&2; fi
exit "${CODE:-0}"
