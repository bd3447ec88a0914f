"""The inside of a local Lambda execution environment (runs in the sandbox's child process).

Mirrors the Python Lambda runtime: the environment is the function's (plus Lambda's
reserved variables), the working directory and first ``sys.path`` entry are the task root
(``LAMBDA_TASK_ROOT``), the handler module is imported once (the *init* phase), and each
invocation gets a context object with ``get_remaining_time_in_millis()``. An init failure
is reported as ``Runtime.ImportModuleError``/``Runtime.UserCodeSyntaxError``/
``Runtime.HandlerNotFound``; a handler exception as ``{"errorType", "errorMessage",
"stackTrace"}``, after logging it the way the runtime does (``[ERROR] Type: message``); a
result that is not JSON-serializable as ``Runtime.MarshalError``.

Only the standard library is imported here before the handler, so a cold start costs what
the function's own imports cost.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["LambdaContext", "main"]


class LambdaContext:
    """The ``context`` argument of a Python Lambda handler."""

    def __init__(self, config: dict[str, Any], request_id: str, deadline_ms: int) -> None:
        self.function_name: str = config["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = config["function_arn"]
        self.memory_limit_in_mb: int = int(config["memory_size"])
        self.aws_request_id = request_id
        self.log_group_name: str = config["log_group_name"]
        self.log_stream_name: str = config["log_stream_name"]
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext([aws_request_id={self.aws_request_id}, function_name={self.function_name}])"


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The traceback without this bootstrap's and importlib's frames (Lambda shows user code)."""
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename != __file__ and not frame.filename.startswith("<frozen")
    ]


def _error(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    """Lambda's error payload."""
    stack = traceback.format_list(_user_frames(exc)) if exc is not None else []
    return {"errorType": error_type, "errorMessage": message, "requestId": "", "stackTrace": stack}


def _log_exception(error_type: str, message: str, exc: BaseException | None = None) -> None:
    """Log an error like the Python runtime: ``[ERROR] Type: message`` and the user frames."""
    lines = [f"[ERROR] {error_type}: {message}"]
    frames = _user_frames(exc) if exc is not None else []
    if frames:
        lines += ["Traceback (most recent call last):", *"".join(traceback.format_list(frames)).rstrip().splitlines()]
    print("\n".join(lines), file=sys.stderr)


def _redirect_output(out: Connection) -> None:
    """Send fd 1 and 2 (print, logging, C extensions) to the parent, line by line."""
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    out.close()


def _load_handler(config: dict[str, Any]) -> Any:
    """Import the handler module by file path under a unique module name (the init phase)."""
    module_name, _, function_name = str(config["handler"]).rpartition(".")
    path = os.path.join(config["code_dir"], module_name.replace(".", "/") + ".py")
    unique = f"_mailroom_local_fn_{config['logical_id']}_{module_name.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': No module named '{module_name}'"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise _InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", exc) from exc
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", exc) from exc
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


class _InitError(Exception):
    def __init__(self, error_type: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.error = _error(error_type, message, cause)


def main(conn: Connection, out: Connection, config: dict[str, Any]) -> None:
    """Entry point of the child process: init, then answer invocations until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business; it stops us
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent until now
    _redirect_output(out)
    os.environ.clear()
    os.environ.update(config["environment"])
    if hasattr(time, "tzset"):
        time.tzset()  # TZ=:UTC, as in Lambda
    os.chdir(config["code_dir"])
    sys.path.insert(0, config["code_dir"])  # the Lambda runtime puts LAMBDA_TASK_ROOT first, too

    started = time.perf_counter()
    try:
        handler = _load_handler(config)
    except _InitError as exc:
        _log_exception(exc.error["errorType"], exc.error["errorMessage"], exc.__cause__)
        conn.send(("init_error", exc.error))
        return
    except Exception as exc:
        _log_exception(type(exc).__name__, str(exc), exc)
        conn.send(("init_error", _error(type(exc).__name__, str(exc), exc)))
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone: so are we
            return
        if message[0] != "invoke":
            return
        _, request_id, payload, deadline_ms = message
        conn.send(_invoke(handler, config, request_id, payload, deadline_ms))


def _invoke(handler: Any, config: dict[str, Any], request_id: str, payload: str, deadline_ms: int) -> tuple[str, Any]:
    context = LambdaContext(config, request_id, deadline_ms)
    os.environ["_X_AMZN_TRACE_ID"] = (
        f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
    )
    try:
        result = handler(json.loads(payload), context)
    except Exception as exc:
        error = _error(type(exc).__name__, str(exc), exc)
        error["requestId"] = request_id
        _log_exception(type(exc).__name__, str(exc), exc)
        return ("error", error)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        return ("result", json.dumps(result))
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        _log_exception("Runtime.MarshalError", message)
        return (
            "error",
            {"errorType": "Runtime.MarshalError", "errorMessage": message, "requestId": request_id, "stackTrace": []},
        )
