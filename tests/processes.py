"""Stopping the processes a test started: politely first, then for sure, so none outlives the test."""

from __future__ import annotations

import subprocess


def stop_process(*procs: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM every process, wait up to ``timeout`` s for each, SIGKILL one that is still there (and reap it)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
