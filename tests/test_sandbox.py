"""The sandbox against what untrusted code does: loop, fork, hog memory, flood output, write outside, connect."""
import os
import socket
import subprocess
import threading
import time

import pytest

from w2slab.errors import ConfigError
from w2slab.sandbox import SandboxLimits, isolation, run_python

LIMITS = SandboxLimits(cpu_s=2, wall_s=6, memory_mb=256, processes=8, output_bytes=4096)


def _leftovers() -> int:
    """Processes of the sandbox's user still alive (0 expected once a run has returned)."""
    if isolation()["user"] != "nobody":
        return 0
    time.sleep(0.3)
    out = subprocess.run(["ps", "-u", "nobody", "-o", "pid="], capture_output=True, text=True).stdout
    return len(out.split())


def test_plain_code_runs_and_its_files_stay_in_its_folder():
    r = run_python("open('a.txt', 'w').write('x'); print(open('a.txt').read(), input())", stdin="fed\n")
    assert r.status == "ok" and r.stdout == "x fed\n" and r.wall_ms > 0


def test_infinite_loop_hits_the_cpu_limit():
    r = run_python("while True: pass", limits=LIMITS)
    assert r.status == "cpu_limit" and r.cpu_s >= 1.9


def test_sleeping_forever_hits_the_wall_limit():
    start = time.monotonic()
    r = run_python("import time; time.sleep(60)", limits=SandboxLimits(wall_s=1.5))
    assert r.status == "timeout" and time.monotonic() - start < 5


def test_fork_bomb_is_bounded_and_nothing_survives():
    code = ("import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        print('refused after', n, flush=True)\n        break\n    if pid == 0:\n        time.sleep(60)\n"
            "        os._exit(0)\n    n += 1\n")
    r = run_python(code, limits=LIMITS)
    if isolation()["user"] == "nobody" or os.geteuid() != 0:
        assert r.status == "ok" and r.stdout.startswith("refused after")
        assert int(r.stdout.split()[-1]) <= LIMITS.processes + 2
    assert _leftovers() == 0
    bomb = run_python("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass", limits=LIMITS)
    assert bomb.status in ("timeout", "cpu_limit") and _leftovers() == 0


def test_memory_hog_is_stopped():
    r = run_python("x = []\nwhile True: x.append(' ' * 10**6)", limits=LIMITS)
    assert r.status == "memory_limit"


def test_huge_print_is_cut_at_the_output_cap():
    r = run_python("while True: print('x' * 1000)", limits=LIMITS)
    assert r.status == "output_limit" and len(r.stdout) <= LIMITS.output_bytes


def test_writing_outside_its_folder_is_refused(tmp_path):
    outside = tmp_path / "escaped.txt"
    for code in (f"open({str(outside)!r}, 'w').write('x')",
                 f"import os; os.write(os.open({str(outside)!r}, os.O_WRONLY | os.O_CREAT), b'x')",
                 "open('/tmp/w2slab-sandbox-escape.txt', 'w').write('x')",
                 "open('../escape.txt', 'w').write('x')"):
        r = run_python(code, limits=LIMITS)
        assert r.status == "error" and "PermissionError" in r.stderr, code
    assert not outside.exists() and not os.path.exists("/tmp/w2slab-sandbox-escape.txt")


def test_opening_a_socket_reaches_nothing():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(4)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)))
    thread.start()
    port = server.getsockname()[1]
    r = run_python(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2).send(b'hi')",
                   limits=LIMITS)
    thread.join()
    server.close()
    assert r.status == "error" and accepted == [None]


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_limits_are_checked():
    with pytest.raises(ConfigError, match="cpu_s"):
        SandboxLimits(cpu_s=0)
    with pytest.raises(ConfigError, match="wall_s"):
        SandboxLimits(wall_s=float("inf"))
