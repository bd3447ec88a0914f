"""``python -m bench.coldstart``: the cold start of every function, against a bare ``import boto3`` (issue #9).

What is timed: the import of each function's handler module (``functions/*/app.py``, the
module of its ``Handler``) in a fresh Python process, the module's init code included
(settings, boto3 clients), interpreter start-up not included; and, in the same rounds, a
bare ``import boto3``. The child times its own import with ``time.perf_counter()``
(``bench.tracing.IMPORT_CODE``). Goal: every handler at most 1.5x the bare boto3 import.

The layout is bench.tracing's "Lambda view" (its helpers): ``app.py`` alone as ``/var/task``,
copies of the layers' packages as ``/opt/python`` (the pins of layers/dependencies/requirements.txt
from the dev venv, and the ``mailroom`` package), boto3 and its dependencies as the runtime
provides them; ``python -S``, so nothing else is importable. One difference: the runtime's
packages here are compiled copies, not links into the dev venv, because the dev venv holds no
bytecode (``PYTHONDONTWRITEBYTECODE`` is set on this machine) and the runtime image is assumed
to ship boto3's bytecode. Layer bytecode "compiled" is what ``sam build`` ships where the host
has a python3.13 (the layers' Makefiles compile them, unchecked-hash ``.pyc``; here they are
compiled by the measuring 3.11, the same work saved); "none" is a layer built without it
(``/opt`` is read-only: compiled at every cold start). ``app.py`` is compiled in "compiled"
too; SAM ships it as source, a few ms at most.

Each function runs with the environment its template entry sets (``Stack.function_env``),
fake credentials, ``AWS_REGION``, and ``AWS_ENDPOINT_URL`` pointing at a closed local port.
Module init must not call AWS: a probe run of each handler (not timed) records every socket
connection and DNS lookup with an audit hook and reports them; the probe also records which
top-level packages each handler loads (bench.size uses it), and warms the file cache.

Rounds are interleaved (bare boto3, then each handler, per bytecode case, round after round)
so that a slow moment of the machine hits them all alike. Not Lambda: this machine's Python
and the dev venv's x86_64 wheels, not python3.13 on arm64; the ratios are the useful figures.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.run import _table, _yes
from bench.tracing import (
    IMPORT_CODE,
    MIN_RUNS,
    RUNTIME_PACKAGE,
    TEMPLATE,
    View,
    _copy,
    _p90,
    _run,
    child_env,
    closure,
    layer_pins,
    top_level,
)

ROOT = Path(__file__).resolve().parents[1]
MAILROOM = ROOT / "layers" / "mailroom" / "mailroom"
GOAL_RATIO = 1.5
BARE = "boto3"  # the key of the bare `import boto3` samples
# What every handler needs before any of Mailroom's code: cumulative steps, timed in the same
# rounds (compiled view), so that the goal can be set against what is unavoidable.
_CLIENT = (
    "from botocore.config import Config\n"
    "boto3.client('dynamodb', config=Config(retries={'mode': 'standard', 'max_attempts': 3}))"
)
FLOOR = (
    ("+ one DynamoDB client", f"import boto3\n{_CLIENT}"),
    ("+ pydantic", f"import boto3\n{_CLIENT}\nfrom pydantic import BaseModel"),
    (
        "+ Powertools Logger and Metrics",
        f"import boto3\n{_CLIENT}\nfrom pydantic import BaseModel\n"
        "from aws_lambda_powertools import Logger, Metrics\nLogger(service='s')\nMetrics(namespace='n', service='s')",
    ),
)
NOWHERE = "http://127.0.0.1:9"  # AWS_ENDPOINT_URL: a closed port (discard), refused at once


def _log(message: str) -> None:
    print(f"bench.coldstart: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the functions
@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str  # the physical name (AWS_LAMBDA_FUNCTION_NAME)
    module: str  # the handler's module, e.g. "app"
    handler_file: Path
    memory_size: int
    env: dict[str, str]


def functions() -> list[Function]:
    """Every function of template.yaml with its handler module and its environment."""
    from mailroom_local.template import Stack  # type: ignore[import-not-found, unused-ignore]

    stack = Stack.load(TEMPLATE)
    found = []
    for logical_id, spec in sorted(stack.functions.items()):
        found.append(
            Function(
                logical_id=logical_id,
                name=str(spec.name),
                module=str(spec.handler).rpartition(".")[0],
                handler_file=Path(spec.handler_file),
                memory_size=int(spec.memory_size),
                env=dict(stack.function_env(logical_id)),
            )
        )
    return found


# ------------------------------------------------------------------------------ the Lambda view
def build_view(base: Path, compiled: bool, funcs: Sequence[Function]) -> View:
    """bench.tracing's layout without the X-Ray SDK, a task folder per function, runtime compiled."""
    view = View(task=base / "task", opt=base / "opt" / "python", runtime=base / "runtime", compiled=compiled)
    for directory in (view.task, view.opt, view.runtime):
        directory.mkdir(parents=True)
    _copy(MAILROOM, view.opt)
    layer = layer_pins()
    for name in layer:
        for top in top_level(name):
            if not (view.opt / top.name).exists():
                _copy(top, view.opt)
    for name in sorted(closure([RUNTIME_PACKAGE]) - set(layer)):
        for top in top_level(name):
            if not (view.runtime / top.name).exists():
                _copy(top, view.runtime)
    compileall.compile_dir(view.runtime, quiet=2, workers=1)  # the runtime's bytecode, in both cases
    for func in funcs:
        task = task_dir(view, func)
        task.mkdir()
        shutil.copy2(func.handler_file, task / func.handler_file.name)  # SAM copies the CodeUri: app.py
    if compiled:
        for directory in (view.task, view.opt):
            compileall.compile_dir(directory, quiet=2, workers=1)
    return view


def task_dir(view: View, func: Function) -> Path:
    return view.task / func.logical_id


def function_view(view: View, func: Function | None) -> View:
    """The view as one function sees it (its own /var/task); the bare boto3 runs in an empty one."""
    return replace(view, task=view.task if func is None else task_dir(view, func))


def function_env(view: View, func: Function | None, base: Path) -> dict[str, str]:
    own = function_view(view, func)
    extra = {
        "AWS_ENDPOINT_URL": NOWHERE,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    }
    if func is None:
        return child_env(own, {}, base, **extra)
    extra["AWS_LAMBDA_FUNCTION_NAME"] = func.name
    extra["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(func.memory_size)
    return child_env(own, func.env, base, **extra)


# ------------------------------------------------------------------------------ the probe
PROBE_CODE = """
import json, sys
calls = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
        calls.append(event + " " + repr(args[1:] if event != "socket.getaddrinfo" else args[:2]))
sys.addaudithook(hook)
roots = {roots!r}
def tops():
    found = {{}}
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or []), None)
        if not origin:
            continue
        for key, root in roots.items():
            if str(origin).startswith(root + "/"):
                found.setdefault(key, set()).add(str(origin)[len(root) + 1:].split("/", 1)[0])
    return {{key: sorted(value) for key, value in found.items()}}
def files():
    found = set()
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if origin and str(origin).startswith(roots["opt"] + "/"):
            found.add(str(origin)[len(roots["opt"]) + 1:])
    return sorted(found)
error = None
try:
    import {module}
except BaseException as exc:
    error = f"{{type(exc).__name__}}: {{exc}}"[:500]
at_import, loaded = tops(), files()
for name in {lazy!r}:
    try:
        __import__(name)
    except BaseException:
        pass
print(json.dumps({{"error": error, "calls": calls, "import": at_import, "lazy": tops(), "files": loaded}}))
"""


@dataclass(frozen=True)
class Probe:
    function: str
    error: str | None  # the import failed
    calls: list[str]  # network activity of the module's init (must be none)
    opt: list[str]  # top-level entries of /opt/python loaded by the import
    runtime: list[str]  # ... of the runtime's packages
    opt_lazy: list[str]  # with the packages our code imports inside functions imported too
    opt_files: list[str]  # the files under /opt/python the import loaded (modules, extensions)


def _imports(everywhere: bool) -> Iterator[tuple[str, str]]:
    """(module, where) of each absolute import in our code (mailroom, functions/*/app.py) inside
    functions, ``TYPE_CHECKING`` blocks left out; ``everywhere``: at module level too."""
    files = [*sorted(MAILROOM.rglob("*.py")), *sorted((ROOT / "functions").glob("*/app.py"))]
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        top_nodes = {id(node) for node in tree.body}
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only or (id(node) in top_nodes and not everywhere):
                continue
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, where
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module, where


def lazy_imports(everywhere: bool = False) -> dict[str, list[str]]:
    """Top-level names our code (mailroom, functions/*/app.py) imports inside functions (at invoke
    time), with where; ``everywhere``: at module level too."""
    found: dict[str, list[str]] = {}
    for name, where in _imports(everywhere):
        found.setdefault(name.split(".")[0], []).append(where)
    return found


def deferred_modules() -> list[str]:
    """The modules our code imports inside functions (full names): what a first invocation may
    load after the handler's import."""
    return sorted({name for name, _ in _imports(everywhere=False)})


# What each handler sample runs: the handler's import, timed (the figure), then every
# module our code imports later, inside functions (the most a first invocation adds to it).
HANDLER_CODE = """
import sys, time
n0 = len(sys.modules)
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
n1 = len(sys.modules)
for name in {deferred!r}:
    __import__(name)  # a failure fails the sample: the column must not leave a module out quietly
t2 = time.perf_counter()
print(f"{{(t1 - t0) * 1000:.3f}} {{n1 - n0}} {{(t2 - t0) * 1000:.3f}}")
"""


def probe(view: View, func: Function, base: Path, lazy: Sequence[str]) -> Probe:
    roots = {"opt": str(view.opt), "runtime": str(view.runtime)}
    code = PROBE_CODE.format(roots=roots, module=func.module, lazy=list(lazy))
    out: dict[str, Any] = json.loads(_run(code, function_env(view, func, base), task_dir(view, func)))
    return Probe(
        function=func.logical_id,
        error=out["error"],
        calls=list(out["calls"]),
        opt=list(out["import"].get("opt", [])),
        runtime=list(out["import"].get("runtime", [])),
        opt_lazy=list(out["lazy"].get("opt", [])),
        opt_files=list(out["files"]),
    )


def probe_all(base: Path | None = None) -> list[Probe]:
    """Probe every handler in a fresh view (for bench.size: which layer packages the functions load)."""
    funcs = functions()
    lazy = sorted(lazy_imports())
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        root = Path(tmp) if base is None else base
        view = build_view(root / "probe", True, funcs)
        return [probe(view, func, root, lazy) for func in funcs]


# ------------------------------------------------------------------------------ the samples
@dataclass
class Samples:
    ms: list[float] = field(default_factory=list)
    modules: int = 0
    with_deferred: list[float] = field(default_factory=list)  # the import, then every deferred import


@dataclass(frozen=True)
class ColdStart:
    runs: int
    deferred: list[str]  # the modules our code imports inside functions
    floor: dict[str, list[float]]  # FLOOR's steps (compiled view): ms per round
    functions: list[str]  # logical ids, in the order of the table
    samples: dict[tuple[str, bool], Samples]  # (BARE or logical id, compiled)
    probes: list[Probe]
    seconds: float
    shadowed: list[str] = field(default_factory=list)  # the runtime's distributions the layer ships too

    def median(self, key: str, compiled: bool) -> float:
        return statistics.median(self.samples[(key, compiled)].ms)

    def ratio(self, key: str, compiled: bool) -> float:
        return self.median(key, compiled) / self.median(BARE, compiled)

    def paired_ratio(self, key: str, compiled: bool) -> float:
        """The median of the per-round ratios (each handler against the bare import of its round)."""
        bare, own = self.samples[(BARE, compiled)].ms, self.samples[(key, compiled)].ms
        return statistics.median(y / x for x, y in zip(bare, own, strict=True))

    def met(self, key: str, compiled: bool) -> bool:
        return self.ratio(key, compiled) <= GOAL_RATIO

    def deferred_ratio(self, key: str, compiled: bool) -> float:
        """The import and every deferred import, against the bare boto3 import."""
        return statistics.median(self.samples[(key, compiled)].with_deferred) / self.median(BARE, compiled)


def measure(runs: int = 9) -> ColdStart:
    """Every handler's import and a bare ``import boto3``, ``runs`` interleaved rounds, both bytecode cases."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs must be at least {MIN_RUNS}")
    started = time.perf_counter()
    funcs = functions()
    lazy = sorted(lazy_imports())
    deferred = deferred_modules()
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        base = Path(tmp)
        views = [build_view(base / name, compiled, funcs) for name, compiled in (("cached", True), ("none", False))]
        _log(f"views built in {time.perf_counter() - started:.1f} s; probing {len(funcs)} handlers")
        probes = [probe(views[0], func, base, lazy) for func in funcs]  # also warms the file cache
        for found in probes:
            if found.error or found.calls:
                _log(f"{found.function}: module init {found.error or ''} {found.calls}")
        keys: list[tuple[str, Function | None]] = [(BARE, None), *((func.logical_id, func) for func in funcs)]
        samples = {(key, view.compiled): Samples() for key, _ in keys for view in views}
        floor: dict[str, list[float]] = {label: [] for label, _ in FLOOR}
        for round_ in range(1, runs + 1):
            for view in views:
                for key, func in keys:
                    if func is None:
                        code, cwd = IMPORT_CODE.format(body="import boto3"), view.task
                    else:
                        code, cwd = HANDLER_CODE.format(module=func.module, deferred=deferred), task_dir(view, func)
                    out = _run(code, function_env(view, func, base), cwd).split()
                    sample = samples[(key, view.compiled)]
                    sample.ms.append(float(out[0]))
                    sample.modules = int(out[1])
                    if func is not None:
                        sample.with_deferred.append(float(out[2]))
                if view.compiled:
                    for label, body in FLOOR:
                        out = _run(IMPORT_CODE.format(body=body), function_env(view, None, base), view.task).split()
                        floor[label].append(float(out[0]))
            _log(f"round {round_}/{runs} done ({time.perf_counter() - started:.0f} s)")
    return ColdStart(
        runs=runs,
        deferred=deferred,
        floor=floor,
        functions=[func.logical_id for func in funcs],
        samples=samples,
        probes=probes,
        seconds=time.perf_counter() - started,
        shadowed=sorted(set(layer_pins()) & closure([RUNTIME_PACKAGE])),
    )


# ------------------------------------------------------------------------------ the report
def _bytecode(compiled: bool) -> str:
    return "compiled (as sam build ships the layers)" if compiled else "none (a build without python3.13)"


def table(result: ColdStart) -> list[str]:
    rows: list[list[object]] = []
    for compiled in (False, True):
        for key in [BARE, *result.functions]:
            sample = result.samples[(key, compiled)]
            label = "bare `import boto3`" if key == BARE else f"{key} (`app.py`)"
            ratio = result.ratio(key, compiled)
            rows.append(
                [
                    label,
                    _bytecode(compiled),
                    f"{statistics.median(sample.ms):.1f}",
                    f"{_p90(sample.ms):.1f}",
                    sample.modules,
                    "1.00x" if key == BARE else f"**{ratio:.2f}x** ({result.paired_ratio(key, compiled):.2f}x)",
                    "-" if key == BARE else _yes(ratio <= GOAL_RATIO),
                    "-"
                    if key == BARE
                    else f"{statistics.median(sample.with_deferred):.1f} ({result.deferred_ratio(key, compiled):.2f}x)",
                ]
            )
    lines = _table(
        [
            "import",
            "layer bytecode",
            "median ms",
            "p90 ms",
            "modules loaded",
            "vs bare boto3 (median of per-round ratios)",
            f"<= {GOAL_RATIO}x",
            "with every deferred import: median ms (vs bare boto3)",
        ],
        rows,
    )
    notes = []
    for found in result.probes:
        if found.error:
            notes.append(f"{found.function}: the import failed: {found.error}")
        if found.calls:
            notes.append(f"{found.function}: module init reached the network: {'; '.join(found.calls[:5])}")
    lines += [
        "",
        f"{result.runs} interleaved rounds per row ({result.seconds:.0f} s in all); a fresh `python -S` per sample, "
        "interpreter start-up not counted; the ratio is of the medians, the same bytecode case.",
        *(
            [
                f"The layer ships {', '.join(result.shadowed)} of the runtime's SDK: it comes first on sys.path, so "
                "even the bare `import boto3` loads the layer's copy (without bytecode in the 'none' rows)."
            ]
            if result.shadowed
            else []
        ),
        "Deferred imports: the last column adds, after the handler's import, every module our code imports "
        f"inside functions ({', '.join(result.deferred)}): the most a first invocation can add by imports. A "
        "function loads only those its path needs (the dispatcher none of the renderers); the models' deferred "
        "pydantic builds (each on its first use) are not in it.",
        "Module init and AWS: "
        + ("; ".join(notes) if notes else "no handler's import made a network call (audit hook on sockets)."),
        "",
        "What every handler needs before any of Mailroom's code (cumulative, the same rounds, compiled view):",
        "",
        *_table(
            ["step", "median ms", "vs bare boto3"],
            [["bare `import boto3`", f"{result.median(BARE, True):.1f}", "1.00x"]]
            + [
                [label, f"{statistics.median(ms):.1f}", f"{statistics.median(ms) / result.median(BARE, True):.2f}x"]
                for label, ms in result.floor.items()
            ],
        ),
    ]
    return lines


def summary_rows(result: ColdStart) -> list[tuple[str, str, str, str]]:
    rows = []
    for compiled in (False, True):
        worst = max(result.functions, key=lambda key: result.ratio(key, compiled))
        within = sum(result.met(key, compiled) for key in result.functions)
        rows.append(
            (
                f"cold start: handler import vs bare `import boto3`, layer bytecode {_bytecode(compiled)}, "
                f"median of {result.runs}",
                f"boto3 {result.median(BARE, compiled):.0f} ms; worst {worst} **{result.ratio(worst, compiled):.2f}x** "
                f"({result.median(worst, compiled):.0f} ms); {within} of {len(result.functions)} within",
                f"every handler <= {GOAL_RATIO}x",
                _yes(within == len(result.functions)),
            )
        )
    worst = max(result.functions, key=lambda key: result.deferred_ratio(key, True))
    rows.append(
        (
            "cold start: handler import plus every deferred import (the worst first invocation), compiled layer",
            f"worst {worst} {result.deferred_ratio(worst, True):.2f}x; "
            f"{sum(result.deferred_ratio(key, True) <= GOAL_RATIO for key in result.functions)} of "
            f"{len(result.functions)} within {GOAL_RATIO}x",
            "- (the issue's figure is the import)",
            "-",
        )
    )
    ms = list(result.floor.values())[-1]
    rows.append(
        (
            "cold start: what every handler needs before Mailroom's code (boto3, a DynamoDB client, pydantic, "
            "Powertools Logger and Metrics), compiled",
            f"{statistics.median(ms) / result.median(BARE, True):.2f}x ({statistics.median(ms):.0f} ms)",
            "-",
            "-",
        )
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help=f"rounds (>= {MIN_RUNS}; default 9)")
    args = parser.parse_args(argv)
    if args.runs < MIN_RUNS:
        parser.error(f"--runs must be at least {MIN_RUNS}")
    result = measure(args.runs)
    print(
        "\n".join(
            [
                "## Cold start (issue #9)",
                "",
                *table(result),
                "",
                *_table(["measurement", "result", "goal", "met"], summary_rows(result)),
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
