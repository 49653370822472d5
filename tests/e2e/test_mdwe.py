"""The unit's ``MemoryDenyWriteExecute=yes``, proven: the demo runs under the kernel's own MDWE.

systemd enforces the setting with ``prctl(PR_SET_MDWE)`` on kernels that have it (6.3+), else a
seccomp filter with the same effect: no mapping may become writable and executable. The test
sets it on a process, checks it took, and runs every adapter, uvloop, msgspec, aiohttp and
websockets in it: anything that needs W+X memory (a JIT, a libffi trampoline) fails there.
"""

from __future__ import annotations

import subprocess
import sys

RUN_UNDER_MDWE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()} (kernel 6.3+ needed)")
if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != PR_MDWE_REFUSE_EXEC_GAIN:
    sys.exit("MDWE did not take")
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass  # refused, as it must be: the setting is in force for what follows
else:
    sys.exit("a writable and executable mapping was allowed: MDWE is not in force")
from tradebus.cli import main
sys.exit(main(["demo", "--duration", "4"]))
"""


def test_the_demo_runs_with_memory_deny_write_execute() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", RUN_UNDER_MDWE],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = done.stdout.splitlines()
    providers = {
        line.split(b'"provider":"')[1].split(b'"')[0] for line in lines if b'"provider"' in line
    }
    assert {b"ttmt", b"tpalerts", b"traderws", b"mt4bridge"} <= providers
