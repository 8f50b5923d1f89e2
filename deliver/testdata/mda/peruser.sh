#!/bin/sh
# Test MDA: writes its input to $OUT/$1 (one file per user), exits 0.
cat > "$OUT/$1"
