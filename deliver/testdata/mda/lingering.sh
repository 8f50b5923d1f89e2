#!/bin/sh
# Test MDA: reads stdin and exits 0, but leaves a helper holding stderr open.
cat > /dev/null
sleep 60 &
echo $! > "$OUT/child.tmp" && mv "$OUT/child.tmp" "$OUT/child"
exit 0
