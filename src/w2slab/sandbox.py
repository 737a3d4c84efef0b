"""Run untrusted Python (model-written or mutated code) in a separate process with limits.

Layers, each reported in :attr:`SandboxResult.isolation` so a reader knows what held:

- a fresh process in its own session (so a timeout kills everything it started) with rlimits on CPU seconds,
  address space, file size, open files and process count, a wall-clock limit and a cap on captured output;
- a throw-away working directory that is also HOME and TMPDIR, removed afterwards;
- where the OS allows: as root, the code runs as user ``nobody`` (so the process limit applies and nothing
  root-owned is writable); with ``unshare``, in new user, network and PID namespaces (no network interface but
  loopback-down, and every process it forks dies with it);
- always: a Python audit hook, installed before the code runs, that refuses writes outside the working
  directory and socket connect/bind. An in-process hook is a guard against accidents, not a security boundary
  (ctypes could bypass it); the OS layers above are the boundary.

No w2slab imports above :mod:`w2slab.errors` (ground floor).
"""
from __future__ import annotations

import dataclasses
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import ConfigError

NOBODY = 65534
STATUSES = ("ok", "error", "timeout", "cpu_limit", "memory_limit", "output_limit")

_GUARD = r'''
import os, sys
_ROOT = os.path.realpath(sys.argv[1])
_ALLOWED = {"/dev/null"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.replace": 2, "os.chmod": 1,
                "os.chown": 1, "os.symlink": 2, "os.link": 2, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1,
                "shutil.copyfile": 2, "shutil.move": 2, "os.mkfifo": 1, "os.mknod": 1}
_NET_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"}

def _inside(path):
    if isinstance(path, int) or path is None:
        return True
    try:
        path = os.fsdecode(path)
    except Exception:
        return False
    real = os.path.realpath(os.path.join(_ROOT, path))
    return real == _ROOT or real.startswith(_ROOT + os.sep) or real in _ALLOWED

def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
        if writing and not _inside(path):
            raise PermissionError(f"sandbox: writing outside the working directory is refused: {path!r}")
    elif event in _PATH_EVENTS:
        for path in args[:_PATH_EVENTS[event]]:
            if not _inside(path):
                raise PermissionError(f"sandbox: {event} outside the working directory is refused: {path!r}")
    elif event in _NET_EVENTS:
        raise PermissionError(f"sandbox: network access is refused ({event})")

sys.addaudithook(_hook)
_main = os.path.join(_ROOT, sys.argv[2])
sys.argv = [_main]
with open(_main, encoding="utf-8") as _f:
    _code = compile(_f.read(), _main, "exec")
del _f
exec(_code, {"__name__": "__main__", "__file__": _main})
'''


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """cpu_s: CPU seconds; wall_s: wall-clock seconds; memory_mb: address space; processes: processes and
    threads the code may add; output_bytes: stdout + stderr kept (more stops the run); file_mb: largest file."""

    cpu_s: float = 5.0
    wall_s: float = 10.0
    memory_mb: int = 512
    processes: int = 16
    output_bytes: int = 1 << 16
    file_mb: int = 16

    def __post_init__(self) -> None:
        for name in ("cpu_s", "wall_s", "memory_mb", "processes", "output_bytes", "file_mb"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or math.isinf(value):
                raise ConfigError(f"sandbox limit {name} must be a positive finite number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """status: one of STATUSES; stdout/stderr: decoded, at most ``output_bytes`` together; wall_ms: milliseconds
    from start to exit; cpu_s: CPU seconds of the code and its children; isolation: the active layers (see the
    module docstring)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_ms: float
    cpu_s: float
    isolation: dict

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_UNSHARE: list[str] | None = None  # probed once per process


def _drop_to_nobody() -> bool:
    return os.geteuid() == 0


def _interpreter(as_nobody: bool) -> str:
    """The interpreter the code runs on (with -S: the standard library only). ``W2SLAB_SANDBOX_PYTHON`` if set;
    else, when the code runs as ``nobody``, the first of this interpreter, /usr/bin/python3 and
    /usr/local/bin/python3 that ``nobody`` can execute (one under a private home directory, e.g. pyenv in /root,
    is not)."""
    chosen = os.environ.get("W2SLAB_SANDBOX_PYTHON")
    if chosen:
        return chosen
    own = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    if not as_nobody:
        return own
    for candidate in (own, "/usr/bin/python3", "/usr/local/bin/python3"):
        if _runs_as_nobody(candidate):
            return candidate
    raise ConfigError("no Python interpreter is executable by user nobody (this one lives under a private folder);"
                      " set W2SLAB_SANDBOX_PYTHON to one that is, e.g. /usr/bin/python3")


_RUNNABLE: dict[str, bool] = {}


def _runs_as_nobody(path: str) -> bool:
    if path not in _RUNNABLE:
        try:
            probe = subprocess.run([path, "-S", "-c", "pass"], capture_output=True, timeout=10, cwd="/",
                                   preexec_fn=_preexec(SandboxLimits(), True, 4096))
            _RUNNABLE[path] = probe.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _RUNNABLE[path] = False
    return _RUNNABLE[path]


def _user_processes(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(entry.path).st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _preexec(limits: SandboxLimits, as_nobody: bool, nproc: int):
    def setup() -> None:
        os.setsid()
        cpu = math.ceil(limits.cpu_s)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = limits.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20, limits.file_mb << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if as_nobody:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
    return setup


def _unshare_prefix() -> list[str]:
    """``unshare`` arguments for new user + network + PID namespaces, or [] where the OS refuses them."""
    global _UNSHARE
    if _UNSHARE is None:
        prefix = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]
        ok = False
        if shutil.which("unshare"):
            try:
                probe = subprocess.run(prefix + ["true"], capture_output=True, timeout=10,
                                       preexec_fn=_preexec(SandboxLimits(), _drop_to_nobody(), 4096))
                ok = probe.returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
        _UNSHARE = prefix if ok else []
    return _UNSHARE


def isolation() -> dict:
    """The layers :func:`run_python` will use on this machine."""
    prefix = _unshare_prefix()
    return {"process": "own session + rlimits", "user": "nobody" if _drop_to_nobody() else "caller",
            "python": _interpreter(_drop_to_nobody()), "namespaces": "user,net,pid" if prefix else "none", "network": "netns + audit hook" if prefix
            else "audit hook", "files": "audit hook" + (" + uid nobody" if _drop_to_nobody() else "")}


def run_python(code: str, *, limits: SandboxLimits = SandboxLimits(), stdin: str = "") -> SandboxResult:
    """Run the Python source ``code`` in a fresh sandboxed interpreter; never raises for what the code does."""
    if not isinstance(code, str):
        raise ConfigError(f"code must be a str, got {type(code).__name__}")
    as_nobody = _drop_to_nobody()
    prefix = _unshare_prefix()
    workdir = Path(tempfile.mkdtemp(prefix="w2slab-sandbox-"))
    try:
        (workdir / "main.py").write_text(code, encoding="utf-8")
        (workdir / ".guard.py").write_text(_GUARD, encoding="utf-8")
        if as_nobody:
            for path in (workdir, workdir / "main.py", workdir / ".guard.py"):
                os.chown(path, NOBODY, NOBODY)
        uid = NOBODY if as_nobody else os.getuid()
        nproc = _user_processes(uid) + limits.processes + 2  # + unshare and the interpreter itself
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        argv = prefix + [_interpreter(as_nobody), "-S", "-s", "-B", str(workdir / ".guard.py"), str(workdir), "main.py"]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_preexec(limits, as_nobody, nproc))
        out, err, overflow, timed_out, cpu_s = _collect(proc, stdin.encode("utf-8"), limits)
        wall_ms = (time.perf_counter() - start) * 1000
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    status = _status(proc.returncode, stderr, overflow, timed_out, cpu_s, limits)
    return SandboxResult(status=status, returncode=proc.returncode, stdout=stdout, stderr=stderr,
                         wall_ms=round(wall_ms, 3), cpu_s=round(cpu_s, 3),
                         isolation=isolation())


def _collect(proc: subprocess.Popen, stdin: bytes, limits: SandboxLimits) -> tuple[bytes, bytes, bool, bool, float]:
    """Read stdout/stderr until exit, the output cap or the wall limit (killing the whole session on either);
    returns (stdout, stderr, over the output cap, over the wall limit, CPU seconds used)."""
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    selector = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + limits.wall_s
    overflow = timed_out = False
    open_streams = 2
    while open_streams:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in selector.select(timeout=min(remaining, 0.5)):
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            buffers[key.fd].extend(chunk)
        if sum(len(b) for b in buffers.values()) > limits.output_bytes:
            overflow = True
            break
    selector.close()
    if timed_out or overflow:
        _kill_session(proc)
    cpu_s = _reap(proc, max(1.0, deadline - time.monotonic()))
    if cpu_s is None:
        timed_out = True
        _kill_session(proc)
        cpu_s = _reap(proc, None)
    _kill_session(proc)  # whatever it forked and left behind
    out, err = (bytes(buffers[stream.fileno()]) for stream in (proc.stdout, proc.stderr))
    proc.stdout.close()
    proc.stderr.close()
    cap = limits.output_bytes
    return out[:cap], err[:max(0, cap - min(len(out), cap))], overflow, timed_out, cpu_s


def _reap(proc: subprocess.Popen, timeout: float | None) -> float | None:
    """Wait for the child (``timeout`` seconds, None = for ever); set its returncode and return the CPU seconds
    it and every descendant it waited for used (wait4's rusage), or None if it is still running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


def _kill_session(proc: subprocess.Popen, *, settle_s: float = 5.0) -> None:
    """SIGKILL every process of the run's session but its leader, again until none is left (a fork bomb keeps
    forking while it is being killed) or ``settle_s`` has passed; then the leader, if it has not exited by itself.

    The leader (``unshare``, or the interpreter) goes last so that it reaps its own child: killed first, it would
    leave that child a zombie for the container's init, which may never reap it."""
    deadline = time.monotonic() + settle_s
    while True:
        others = [pid for pid in _session_members(proc.pid) if pid != proc.pid]
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not others or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    leader_deadline = time.monotonic() + 1.0
    while proc.returncode is None and time.monotonic() < leader_deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return
        time.sleep(0.01)
    if proc.returncode is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"{entry.path}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != b"Z":  # field 6 of stat: session id
                members.append(int(entry.name))
    return members


def _status(returncode: int | None, stderr: str, overflow: bool, timed_out: bool, cpu_s: float,
            limits: SandboxLimits) -> str:
    if overflow:
        return "output_limit"
    if returncode != 0 and cpu_s >= math.ceil(limits.cpu_s) - 0.05:
        return "cpu_limit"
    if timed_out:
        return "timeout"
    if "MemoryError" in stderr[-2000:]:
        return "memory_limit"
    return "ok" if returncode == 0 else "error"
