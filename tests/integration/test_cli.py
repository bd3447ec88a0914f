"""``python -m mailroom_local``: serves, and Ctrl-C stops it cleanly (exit 0, no orphans)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import http, wait_for
from tests.support import ROOT

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_everything_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("PORT", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailroom_local", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job in a terminal
    )
    lines: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: errors.extend(iter(process.stderr.readline, "")), daemon=True),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()
    try:
        url = wait_for(
            lambda: next(
                (m.group(1) for line in lines if (m := re.search(r"running at (http://\S+?)/?\s", line))), None
            ),
            timeout=30.0,
            interval=0.1,
        )
        assert url, "".join(lines + errors)
        assert http("GET", f"{url}/_local/health").json() == {"status": "ok"}
        assert http("POST", f"{url}/api/subscriptions", {"email": "cli@example.org"}).status == 202
        children = descendants(process.pid)
        assert children, "the functions run in child processes"

        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        code = process.wait(timeout=10)
        assert code == 0
        assert time.monotonic() - started < 5.0
        for reader in readers:
            reader.join(timeout=5)
        output = "".join(lines + errors)
        assert "Traceback" not in output, output
        assert "stopped" in output
        leftover = wait_for(lambda: not any(alive(pid) for pid in children), timeout=5.0)
        assert leftover, f"orphans: {[pid for pid in children if alive(pid)]}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
