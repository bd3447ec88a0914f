"""Local Lambda execution environments: a child process each, one or more per function.

Like a Lambda execution environment, a :class:`Sandbox` runs the function's code in its own
process (``multiprocessing``, *spawn* start method: a fresh interpreter, nothing inherited
from the runtime), with the function's environment variables, and keeps it warm between
invocations. One invocation runs at a time per environment.

A :class:`SandboxPool` holds a function's environments: like Lambda, an invocation takes an
idle (warm) environment, or starts a new one (a cold start) while the pool is below its
size, or else waits for one to become idle. The runtime sizes each pool from the
function's event sources (see :mod:`mailroom_local.pollers`); a pool of one runs one
invocation at a time, whatever invokes the function.

* Environment: the function's resolved variables (Globals merged) plus Lambda's reserved
  ones (``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``,
  ``AWS_LAMBDA_FUNCTION_VERSION``, ``AWS_LAMBDA_LOG_GROUP_NAME``/``STREAM_NAME``,
  ``AWS_EXECUTION_ENV``, ``LAMBDA_TASK_ROOT``, ``AWS_REGION``, ``TZ=:UTC``), the moto
  endpoint as ``AWS_ENDPOINT_URL`` and fake credentials. The runtime's own ``AWS_*``
  variables (profiles, real credentials) are never passed on.
  ``POWERTOOLS_TRACE_DISABLED=true`` unless the function sets it: there is no local X-Ray.
* Output: the child's stdout and stderr go through a pipe to :class:`~.console.Console`.
* Errors: a handler exception comes back as Lambda's ``errorType``/``errorMessage``; a
  crashed child as ``Runtime.ExitError`` and is restarted; an invocation running past the
  function's ``Timeout`` kills the environment (``Sandbox.Timedout``, "Task timed out after
  N seconds") and a new one is started, as Lambda does.
* Init: the handler module is imported when the environment starts (Lambda's init phase);
  an init error fails the invocation and the next invocation retries the init, as in Lambda.
* Code changes (function code or its layers) restart the environment before the next
  invocation, so edits apply without restarting the runtime.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from . import sandbox_child
from .aws import FAKE_CREDENTIALS
from .console import Console
from .template import FunctionSpec

__all__ = ["Invocation", "Sandbox", "SandboxPool"]

_POLL_SECONDS = 0.05
_INIT_LIMIT_SECONDS = 10.0  # Lambda's init phase limit; then the invoke's own timeout applies


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation, as the Lambda Invoke API would report it."""

    request_id: str
    ok: bool
    payload: Any  # the handler's result, or {"errorType", "errorMessage", ...}
    duration_ms: float
    init_ms: float | None = None  # set on a cold start

    @property
    def error_type(self) -> str | None:
        if self.ok or not isinstance(self.payload, dict):
            return None
        return str(self.payload.get("errorType"))


class Sandbox:
    """One warm execution environment for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        endpoint_url: str,
        region: str,
        account_id: str,
        console: Console,
        label: str | None = None,
    ) -> None:
        self.spec = spec
        self.console = console
        self.label = label or spec.name  # the source of its console lines
        self.function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{spec.name}"
        self._endpoint_url = endpoint_url
        self._region = region
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._stopping = False
        self._process: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self._init_ms: float | None = None
        self._init_error: dict[str, Any] | None = None
        self._started_at = 0.0
        self._fingerprint: tuple[float, int] = (0.0, 0)
        self._reader: threading.Thread | None = None

    @property
    def init_error(self) -> dict[str, Any] | None:
        """The error of the last init, if it failed (Lambda's Runtime.ImportModuleError etc.)."""
        return self._init_error

    def _is_stopping(self) -> bool:
        """Read the flag through a call: another thread sets it while this one waits."""
        return self._stopping

    # ------------------------------------------------------------------ config
    def environment(self, log_stream: str) -> dict[str, str]:
        """The child's environment: the runtime's minus AWS_*, then Lambda's and the function's."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "LAMBDA_", "_X_AMZN"))}
        no_proxy = ",".join(filter(None, [base.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
        lambda_env = {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self._endpoint_url,
            "AWS_REGION": self._region,
            "AWS_DEFAULT_REGION": self._region,
            "AWS_LAMBDA_FUNCTION_NAME": self.spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.spec.runtime or 'python3'}",
            "LAMBDA_TASK_ROOT": str(self.spec.code_dir),
            "_HANDLER": self.spec.handler,
            "TZ": ":UTC",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "PYTHONUNBUFFERED": "1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        return {**base, **lambda_env, **self.spec.environment}

    def _fingerprint_code(self) -> tuple[float, int]:
        newest, count = 0.0, 0
        for root in (self.spec.code_dir, *self.spec.layer_dirs):
            for directory, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
                for name in filenames:
                    try:
                        newest = max(newest, os.stat(os.path.join(directory, name)).st_mtime)
                    except OSError:
                        continue
                    count += 1
        return newest, count

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the environment (init runs in the background); no-op if it runs."""
        with self._lock:
            if self._process is None and not self._is_stopping():
                self._spawn()

    def _spawn(self) -> None:
        log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        config = {
            "logical_id": self.spec.logical_id,
            "function_name": self.spec.name,
            "function_arn": self.function_arn,
            "memory_size": self.spec.memory_size,
            "log_group_name": f"/aws/lambda/{self.spec.name}",
            "log_stream_name": log_stream,
            "handler": self.spec.handler,
            "code_dir": str(self.spec.code_dir),
            "environment": self.environment(log_stream),
        }
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        out_read, out_write = self._context.Pipe(duplex=False)
        self._fingerprint = self._fingerprint_code()
        process = self._context.Process(
            target=sandbox_child.main,
            args=(child_conn, out_write, config),
            name=f"lambda-{self.spec.name}",
            daemon=True,
        )
        with _sigint_blocked():
            process.start()
        child_conn.close()
        out_write.close()
        self._process, self._conn = process, parent_conn
        self._ready, self._init_ms, self._init_error = False, None, None
        self._started_at = time.monotonic()
        self._reader = threading.Thread(
            target=self._forward_output, args=(out_read,), name=f"output-{self.spec.name}", daemon=True
        )
        self._reader.start()

    def _forward_output(self, out_read: Connection) -> None:
        """Copy the child's output to the console, line by line, until the child exits."""
        fd = out_read.fileno()
        pending = b""
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.console.function_line(self.label, line.decode("utf-8", "replace"))
            if pending:
                self.console.function_line(self.label, pending.decode("utf-8", "replace"))
        finally:
            out_read.close()

    def _kill(self, *, graceful: bool = True) -> None:
        """End the child (asked to stop, then terminated, then killed) and forget it."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        if process is None:
            return
        if conn is not None and graceful:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
            process.join(timeout=1.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=2.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=2.0)
        if conn is not None:
            conn.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        if not process.is_alive():
            process.close()

    def stop(self) -> None:
        """Stop the environment; an invocation in flight fails with ``Runtime.Stopped``."""
        self._stopping = True
        acquired = self._lock.acquire(timeout=5.0)
        try:
            self._kill()
        finally:
            if acquired:
                self._lock.release()

    def wait_ready(self, timeout: float) -> dict[str, Any] | None:
        """Wait for the init phase; returns the init error, if any (the runtime's start-up)."""
        with self._lock:
            if self._process is None:
                return self._init_error
            if not self._await_init(time.monotonic() + timeout) and self._init_error is not None:
                self._kill()  # the first invocation retries the init, as Lambda does
            return self._init_error

    # --------------------------------------------------------------- invoking
    def invoke(self, event: Any) -> Invocation:
        """Invoke synchronously (RequestResponse), waiting at most the function's Timeout."""
        request_id = str(uuid.uuid4())
        with self._lock:
            invocation = self._invoke_locked(request_id, event)
        self._log(invocation)
        return invocation

    def _invoke_locked(self, request_id: str, event: Any) -> Invocation:
        if self._is_stopping():
            return _failure(request_id, "Runtime.Stopped", "The local runtime is stopping", 0.0)
        if self._process is not None and self._ready and self._fingerprint_code() != self._fingerprint:
            self.console.info("code changed: starting a new execution environment", self.label)
            self._kill()
        if self._process is None:
            self._spawn()
        cold = not self._ready
        started = time.monotonic()
        if not self._await_init(self._started_at + _INIT_LIMIT_SECONDS + self.spec.timeout):
            init_error = self._init_error
            if init_error is not None:
                self._kill()  # the next invocation retries the init, as Lambda does
                return _failure(
                    request_id,
                    str(init_error["errorType"]),
                    str(init_error["errorMessage"]),
                    (time.monotonic() - started) * 1000,
                    init_error,
                )
            if self._is_stopping():
                return _failure(request_id, "Runtime.Stopped", "The local runtime is stopping", 0.0)
            return self._timeout(request_id, started)
        invocation = self._run(request_id, event, started)
        if cold:
            invocation = Invocation(
                invocation.request_id, invocation.ok, invocation.payload, invocation.duration_ms, self._init_ms
            )
        return invocation

    def _await_init(self, deadline: float) -> bool:
        """True once the child is ready; False on init error, crash, stop or deadline."""
        if self._ready:
            return True
        conn = self._conn
        assert conn is not None
        while not self._is_stopping() and time.monotonic() < deadline:
            try:
                if not conn.poll(_POLL_SECONDS):
                    continue
                kind, value = conn.recv()
            except (EOFError, OSError):
                self._init_error = self._init_error or {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"Runtime exited during init with exit status {self._exit_code()}",
                }
                return False
            if kind == "ready":
                self._ready, self._init_ms = True, float(value)
                return True
            self._init_error = value
            self.console.error(f"init failed: {value.get('errorType')}: {value.get('errorMessage')}", self.label)
            return False
        return False

    def _run(self, request_id: str, event: Any, started: float) -> Invocation:
        conn = self._conn
        assert conn is not None
        timeout = float(self.spec.timeout)
        deadline = time.monotonic() + timeout
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        try:
            conn.send(("invoke", request_id, json.dumps(event), deadline_ms))
        except (OSError, ValueError):
            return self._crashed(request_id, started)
        while True:
            if self._is_stopping():
                self._kill(graceful=False)
                return _failure(
                    request_id, "Runtime.Stopped", "The local runtime is stopping", (time.monotonic() - started) * 1000
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._timeout(request_id, started)
            try:
                if not conn.poll(min(_POLL_SECONDS * 4, remaining)):
                    continue
                kind, value = conn.recv()
            except (EOFError, OSError):
                return self._crashed(request_id, started)
            duration = (time.monotonic() - started) * 1000
            if kind == "result":
                return Invocation(request_id, True, json.loads(value), duration)
            return Invocation(request_id, False, value, duration)

    def _timeout(self, request_id: str, started: float) -> Invocation:
        elapsed = time.monotonic() - started
        self._kill(graceful=False)  # Lambda does not wait for a timed-out handler
        invocation = _failure(
            request_id,
            "Sandbox.Timedout",
            f"{_utc_now()} {request_id} Task timed out after {elapsed:.2f} seconds",
            elapsed * 1000,
        )
        self.console.error(f"Task timed out after {elapsed:.2f} seconds ({request_id})", self.label)
        self._restart_in_background()
        return invocation

    def _crashed(self, request_id: str, started: float) -> Invocation:
        code = self._exit_code()
        self._kill()
        self.console.error(f"execution environment exited (status {code}); starting a new one", self.label)
        invocation = _failure(
            request_id,
            "Runtime.ExitError",
            f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}",
            (time.monotonic() - started) * 1000,
        )
        self._restart_in_background()
        return invocation

    def _restart_in_background(self) -> None:
        if not self._is_stopping():
            self._spawn()  # a warm environment for the next invocation; init runs in the child

    def _exit_code(self) -> int | None:
        process = self._process
        if process is None:
            return None
        process.join(timeout=0.5)
        code: int | None = process.exitcode
        return code

    def _log(self, invocation: Invocation) -> None:
        status = "ok" if invocation.ok else f"error {invocation.error_type}"
        init = f" init {invocation.init_ms:.0f} ms" if invocation.init_ms is not None else ""
        self.console.report(
            self.label, f"{invocation.request_id} {status} duration {invocation.duration_ms:.0f} ms{init}"
        )


class SandboxPool:
    """Up to ``size`` execution environments of one function, started as invocations need them.

    The first environment starts with :meth:`start`; more start on demand, when every
    existing one is busy (so concurrent invocations get cold starts, as in Lambda). An idle
    environment is reused most-recently-used first, so the warmest one serves a lone
    invocation. Environments are only stopped by :meth:`stop`.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        size: int,
        endpoint_url: str,
        region: str,
        account_id: str,
        console: Console,
    ) -> None:
        if size < 1:
            raise ValueError(f"{spec.logical_id}: a pool needs at least one environment, not {size}")
        self.spec = spec
        self.size = size
        self._endpoint_url = endpoint_url
        self._region = region
        self._account_id = account_id
        self._console = console
        self._condition = threading.Condition()
        self._environments = [self._new_environment(spec.name)]
        self._idle = list(self._environments)
        self._stopping = False

    @property
    def environments(self) -> list[Sandbox]:
        """The environments started so far (busy or idle)."""
        with self._condition:
            return list(self._environments)

    @property
    def init_error(self) -> dict[str, Any] | None:
        """The init error of the first environment whose last init failed, if any."""
        return next((e.init_error for e in self.environments if e.init_error is not None), None)

    def start(self) -> None:
        """Start the first environment (its init runs in the background)."""
        self._environments[0].start()

    def wait_ready(self, timeout: float) -> dict[str, Any] | None:
        """Wait for the first environment's init; returns its init error, if any."""
        return self._environments[0].wait_ready(timeout)

    def stop(self) -> None:
        """Stop every environment; waiting and running invocations fail with ``Runtime.Stopped``."""
        with self._condition:
            self._stopping = True
            environments = list(self._environments)
            self._condition.notify_all()
        for environment in environments:
            environment.stop()

    def invoke(self, event: Any) -> Invocation:
        """Invoke synchronously in an idle environment, waiting for one if all are busy."""
        environment = self._acquire()
        if environment is None:
            return _failure(str(uuid.uuid4()), "Runtime.Stopped", "The local runtime is stopping", 0.0)
        try:
            return environment.invoke(event)
        finally:
            with self._condition:
                self._idle.append(environment)
                self._condition.notify()

    def _acquire(self) -> Sandbox | None:
        """An idle environment, else a new one below ``size``, else wait; None once stopping."""
        with self._condition:
            while not self._stopping:
                if self._idle:
                    return self._idle.pop()
                if len(self._environments) < self.size:
                    environment = self._new_environment(f"{self.spec.name}#{len(self._environments) + 1}")
                    self._environments.append(environment)
                    return environment  # it starts (cold) on its first invocation
                self._condition.wait()
            return None

    def _new_environment(self, label: str) -> Sandbox:
        return Sandbox(
            self.spec,
            endpoint_url=self._endpoint_url,
            region=self._region,
            account_id=self._account_id,
            console=self._console,
            label=label,
        )


def _failure(
    request_id: str, error_type: str, message: str, duration_ms: float, payload: dict[str, Any] | None = None
) -> Invocation:
    body = dict(payload or {"errorType": error_type, "errorMessage": message})
    body["requestId"] = request_id
    return Invocation(request_id, False, body, duration_ms)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Start children with SIGINT blocked: a Ctrl-C in the terminal reaches the whole process
    group, and stopping the children is the runtime's job (the child ignores SIGINT, then
    unblocks it)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
