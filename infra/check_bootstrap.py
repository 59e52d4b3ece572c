#!/usr/bin/env python3
"""Checks the release bootstraps `cargo lambda build` produced: each exists, needs no glibc newer than
Amazon Linux 2023's (2.34), and its size is reported.

    python infra/check_bootstrap.py [target/lambda]
"""

import os
import re
import subprocess
import sys

FUNCTIONS = ("get-tickets", "update-tickets", "push-log", "ttl-sweeper")
AL2023_GLIBC = (2, 34)


def glibc_versions(symbol_listing):
    """Every GLIBC_x.y[.z] version named in `objdump -T` output, as tuples."""
    return {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", symbol_listing)}


def required_glibc(path):
    listing = subprocess.run(["objdump", "-T", path], capture_output=True, text=True, check=True).stdout
    versions = glibc_versions(listing)
    return max(versions) if versions else None


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join("target", "lambda")
    failed = False
    print("| function | size | newest glibc symbol | AL2023 (2.34) |")
    print("|---|---|---|---|")
    for name in FUNCTIONS:
        path = os.path.join(root, name, "bootstrap")
        if not os.path.exists(path):
            print("| %s | missing: %s | | FAIL |" % (name, path))
            failed = True
            continue
        size = os.path.getsize(path) / (1024 * 1024)
        needed = required_glibc(path)
        ok = needed is None or needed <= AL2023_GLIBC
        failed |= not ok
        shown = ".".join(map(str, needed)) if needed else "none (static)"
        print("| %s | %.2f MiB | %s | %s |" % (name, size, shown, "ok" if ok else "FAIL"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
