#!/bin/sh
# Test MDA: reads stdin and exits $CODE (default 0), but leaves a helper
# running in its process group, as procmail's forks can. The helper holds
# stderr open, or with DETACH=1 has all its stdio on /dev/null, so that
# nothing but a process-group kill would end it.
cat > /dev/null
if [ -n "$DETACH" ]; then
	sleep 60 </dev/null >/dev/null 2>&1 &
else
	sleep 60 &
fi
echo $! > "$OUT/child.tmp" && mv "$OUT/child.tmp" "$OUT/child"
exit "${CODE:-0}"
