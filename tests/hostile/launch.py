"""Starting the CLI for the hostile suite: `python -m transferkit` as a user would, in a fresh process each time.

Two launchers with one interface (`start(argv, ...) -> Proc`, a Popen look-alike):

- `ExecLauncher`: `sys.executable -m transferkit ARGV` per call (HOSTILE_LAUNCH=exec).
- `ForkLauncher` (default): one server process imports transferkit, torch and Lightning once, then
  forks a child per call that runs `transferkit/__main__.py` through runpy exactly as `python -m` does
  (sys.argv, run_name "__main__", an uncaught exception printed as a traceback with exit 1, an uncaught
  KeyboardInterrupt ending the process by SIGINT). Each child is its own process with its own pid,
  umask, memory limit, stdout and stderr, so exit codes, signals and files behave as with exec; it only
  skips the ~10 s of imports per call that made the suite take far longer than its budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = r'''
import io, json, os, resource, runpy, signal, sys, threading, traceback
import transferkit, transferkit.cli, transferkit.api, transferkit.training.fit, transferkit.runs  # the heavy imports
for name in ("transferkit.tuning", "transferkit.exporting", "transferkit.evaluation.compare", "optuna", "onnx",
             "onnxruntime", "sklearn.linear_model", "pyarrow.parquet", "transformers.models.bert.modeling_bert"):
    try:
        __import__(name)
    except Exception:
        pass

def child(req):
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    if req["umask"] is not None:
        os.umask(req["umask"])
    limit = int(req["memory_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.stdin = open(os.devnull)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
    code = 0
    try:
        if req["code"] is not None:
            sys.argv = ["-c", *req["argv"]]
            exec(compile(req["code"], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = [os.path.join(os.path.dirname(transferkit.__file__), "__main__.py"), *req["argv"]]
            runpy.run_module("transferkit", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)

def reap(pid, rc_path):
    _, status = os.waitpid(pid, 0)
    with open(rc_path + ".part", "w") as fh:
        fh.write(str(os.waitstatus_to_exitcode(status)))
    os.replace(rc_path + ".part", rc_path)

for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        child(req)
    threading.Thread(target=reap, args=(pid, req["rc"]), daemon=True).start()
    print(json.dumps({"pid": pid}), flush=True)
'''


class TimeoutExpired(subprocess.TimeoutExpired):
    """A forked CLI still running after its timeout (what Popen raises, so callers catch one type)."""


class ForkedProc:
    """A CLI process started by the fork server: the parts of Popen the suite uses."""

    def __init__(self, pid: int, folder: Path):
        self.pid, self.folder, self.returncode = pid, folder, None

    def poll(self) -> int | None:
        rc = self.folder / "rc"
        if self.returncode is None and rc.is_file():
            self.returncode = int(rc.read_text())
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutExpired(cmd=f"pid {self.pid}", timeout=timeout)
            time.sleep(0.02)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        read = lambda name: (self.folder / name).read_text(encoding="utf-8", errors="replace")  # noqa: E731
        return read("out"), read("err")


class ForkLauncher:
    import_allowance = 0  # children start with everything imported

    def __init__(self, env: dict[str, str]):
        self.server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, env=env)
        self.count = 0
        self.root = Path(tempfile.mkdtemp(prefix="hostile-procs-"))

    def start(self, argv, *, umask: int | None = None, memory_gb: float = 8, python_code: str | None = None):
        self.count += 1
        folder = self.root / str(self.count)
        folder.mkdir()
        req = {"argv": [str(a) for a in argv], "out": str(folder / "out"), "err": str(folder / "err"),
               "rc": str(folder / "rc"), "umask": umask, "memory_gb": memory_gb, "code": python_code}
        self.server.stdin.write(json.dumps(req) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError("the hostile fork server died")
        return ForkedProc(json.loads(line)["pid"], folder)

    def close(self) -> None:
        self.server.stdin.close()
        try:
            self.server.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a library thread keeps it alive; its children are all reaped
            self.server.kill()
            self.server.wait(timeout=30)
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


class ExecLauncher:
    import_allowance = 120  # seconds added to each timeout for the imports

    def __init__(self, env: dict[str, str]):
        self.env = env

    def start(self, argv, *, umask: int | None = None, memory_gb: float = 8, python_code: str | None = None):
        def preexec():
            # A hostile size must not take the shared machine's memory: past this, allocation fails.
            import resource

            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            if umask is not None:
                os.umask(umask)

        head = [sys.executable, "-c", python_code] if python_code else [sys.executable, "-m", "transferkit"]
        return subprocess.Popen([*head, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, preexec_fn=preexec)

    def close(self) -> None:
        pass


def make_launcher(env: dict[str, str]):
    kind = os.environ.get("HOSTILE_LAUNCH", "fork")
    return ExecLauncher(env) if kind == "exec" else ForkLauncher(env)
