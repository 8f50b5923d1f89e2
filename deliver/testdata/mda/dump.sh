#!/bin/sh
# Test MDA: records its argv (NUL-separated) and stdin in $OUT, exits 0.
printf '%s\0' "$0" "$@" > "$OUT/argv"
cat > "$OUT/stdin"
