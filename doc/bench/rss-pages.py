#!/usr/bin/env python3
"""rss-pages.py PID [BINARY]: where a running popfetch's resident memory is.

Prints the process's anonymous and file-backed RSS, then, for the pages of
BINARY (default: the process's executable) that are mapped in (bit 63 of
/proc/PID/pagemap), how many fall in each ELF section. Run as root. It
shows how much of the peak RSS is popfetch's own code and tables, which
no change to how mail is fetched can lower.
"""
import collections, os, struct, subprocess, sys

pid = int(sys.argv[1])
binpath = sys.argv[2] if len(sys.argv) > 2 else os.readlink(f'/proc/{pid}/exe')
for line in open(f'/proc/{pid}/status'):
    if line.split(':')[0] in ('VmHWM', 'VmRSS', 'RssAnon', 'RssFile'):
        print(line.strip())

present = []
with open(f'/proc/{pid}/pagemap', 'rb') as pm:
    for line in open(f'/proc/{pid}/maps'):
        f = line.split()
        if len(f) < 6 or f[5] != binpath:
            continue
        lo, hi = (int(x, 16) for x in f[0].split('-'))
        pm.seek(lo // 4096 * 8)
        data = pm.read((hi - lo) // 4096 * 8)
        for i in range((hi - lo) // 4096):
            if struct.unpack_from('<Q', data, i * 8)[0] >> 63:
                present.append(lo + i * 4096)

sections = []
out = subprocess.run(['readelf', '-SW', binpath], capture_output=True, text=True).stdout
for line in out.splitlines():
    f = line.replace('[ ', '[').split()
    if len(f) > 5 and f[0].startswith('[') and f[1].startswith('.'):
        addr, size = int(f[3], 16), int(f[5], 16)
        if addr:
            sections.append((addr, addr + size, f[1]))
kb = collections.Counter()
for a in present:
    name = next((n for lo, hi, n in sections if lo <= a + 4095 and a < hi), '?')
    kb[name] += 4
print(f'{binpath}: {len(present) * 4} kB mapped in')
for name, n in kb.most_common():
    print(f'  {name:<14} {n:>6} kB')
