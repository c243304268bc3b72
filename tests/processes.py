"""Ending the real subprocesses a test started (workers, supervisors), whatever happened."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    """Send ``sig`` (unless it already exited) and return its exit status; a process still running
    after ``timeout`` seconds is killed, so no test leaves one behind."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
