#!/usr/bin/env python3
"""Size of telegen's binary per crate: `size_report.py NM BINARY [TOP]`.

Sums the sizes of the binary's symbols (as NM reports them, demangled) by the crate that
defines them: the first path segment of the symbol name. An approximation (generic code is
attributed to the crate that names it), good enough to see what to trim first.
"""
import re
import subprocess
import sys
from collections import Counter

nm, binary = sys.argv[1], sys.argv[2]
top = int(sys.argv[3]) if len(sys.argv) > 3 else 12
out = subprocess.run([nm, "-S", "--size-sort", "-C", binary], capture_output=True, text=True, check=True).stdout
sizes = Counter()
for line in out.splitlines():
    parts = line.split(maxsplit=3)
    if len(parts) < 4:
        continue
    size, name = int(parts[1], 16), parts[3]
    name = re.sub(r"^(<|impl |&|\*const |\*mut |dyn )+", "", name)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    sizes[m.group(1) if m else "(C and unnamed)"] += size
total = sum(sizes.values())
print(f"| crate | KiB | share |\n|---|---|---|")
for crate, size in sizes.most_common(top):
    print(f"| {crate} | {size / 1024:.0f} | {100 * size / total:.0f}% |")
