"""Condenses nvcc -Xptxas=-v output into one line per kernel and architecture:
registers, spill stores/loads, stack, shared memory."""

import re
import subprocess
import sys


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
        return out.stdout.splitlines()
    except OSError:
        return names


def main(path):
    rows, cur = [], None
    for line in open(path, errors="replace"):
        m = re.search(r"Compiling entry function '(\S+)' for '(\S+)'", line)
        if m:
            cur = {"name": m.group(1), "arch": m.group(2)}
            rows.append(cur)
            continue
        if cur is None:
            continue
        if m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            cur.update(stack=m.group(1), spill_st=m.group(2), spill_ld=m.group(3))
        if m := re.search(r"Used (\d+) registers", line):
            cur["regs"] = m.group(1)
        if m := re.search(r"(\d+) bytes smem", line):
            cur["smem"] = m.group(1)
    names = demangle([r["name"] for r in rows])
    for r, n in zip(rows, names):
        n = re.sub(r"\(anonymous namespace\)::|dmmd::", "", n)
        print(f"{r['arch']:6s} regs={r.get('regs','?'):>3s} spill_st={r.get('spill_st','?')} "
              f"spill_ld={r.get('spill_ld','?')} stack={r.get('stack','?')} smem={r.get('smem','0')}  {n[:140]}")
    if not rows:
        print("(no ptxas lines found: CUDA kernels not compiled, or -Xptxas=-v not set)")


if __name__ == "__main__":
    main(sys.argv[1])
