"""Ends the Neuron container's keep-alive process, so that a finished Batch job stops.

The image's entry point (/usr/local/bin/dockerd-entrypoint.py) runs the job's command and, when it
exits 0, runs `tail -f /dev/null` "to prevent docker exit": the job (and its Neuron instance) would
run until the Batch timeout. compile_job.py starts this script detached just before it exits 0; the
script waits for that exact process to appear, sends it SIGTERM and exits, so the entry point
returns and the container stops with status 0.

It reads /proc instead of calling pkill: procps is not guaranteed in the image.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

KEEP_ALIVE_CMDLINE = b"tail\0-f\0/dev/null\0"
"""/proc/<pid>/cmdline of the entry point's `subprocess.call(['tail', '-f', '/dev/null'])`."""

POLL_SECONDS = 1.0
GIVE_UP_SECONDS = 600.0
"""Stop waiting if no keep-alive process shows up (the job ran under another entry point)."""


def keep_alive_pids(proc: Path = Path("/proc")) -> list[int]:
    """Ids of the processes whose command line is exactly `tail -f /dev/null`."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended, or is not ours to read
            continue
        if cmdline == KEEP_ALIVE_CMDLINE:
            pids.append(int(entry.name))
    return pids


def main() -> int:
    deadline = time.monotonic() + GIVE_UP_SECONDS
    while time.monotonic() < deadline:
        pids = keep_alive_pids()
        if pids:
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
            return 0
        time.sleep(POLL_SECONDS)
    return 1


if __name__ == "__main__":
    sys.exit(main())
