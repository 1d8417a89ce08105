"""Runs a command (uwsgi serving Keystone) in its own session and stops it when told to (SIGTERM,
SIGINT) or when the test process that started this script goes away, however it ended: a test
binary keeps one Keystone in a static, which Rust never drops, and a killed test never drops anything.

Usage: python3 supervise.py COMMAND [ARG...]
Exit status: the command's, or 0 after stopping it.
"""
import os
import signal
import subprocess
import sys
import time

POLL_SECONDS = 0.2
GRACE_SECONDS = 5


def main():
    parent = os.getppid()
    child = subprocess.Popen(sys.argv[1:], start_new_session=True)

    def stop(*_):
        try:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        except ProcessLookupError:
            pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        code = child.poll()
        if code is not None:
            sys.exit(code)
        if os.getppid() != parent:
            stop()
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main()
