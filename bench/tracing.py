"""``python -m bench.tracing``: what Powertools Tracer, and the AWS X-Ray SDK under it, would cost.

Issue #8, item 3; docs/tracing.md has the figures and the decision. Three measurements:

1. Import time. Each sample is a fresh Python process that times its own import statements
   with ``time.perf_counter()`` and prints the milliseconds: interpreter start-up is not in
   the figure, only the import (and, for the worker, the module's own init code: settings,
   boto3 clients, the thread pool - what a cold start runs before the first invocation).
   The scenarios run interleaved, round after round, so that a slow moment of the machine
   hits them all alike; the added cost of Tracer is the median of the per-round differences.
2. CPU per AWS call, with botocore patched by the X-Ray SDK (through ``Tracer()``) and
   without: a DynamoDB ``GetItem`` on a real botocore client with Mailroom's client config,
   answered inside botocore (a ``before-send`` hook, no network), inside a sampled
   invocation (``_X_AMZN_TRACE_ID`` set as Lambda sets it). The X-Ray daemon is a UDP socket
   of the child process; the subsegments it receives are counted to show the patch was live.
3. Size on disk of what adding aws-xray-sdk to the dependencies layer would add, from the
   dev venv's installed files (``RECORD``), bytecode left out (the layer ships none).

How it mirrors Lambda. The samples run in a "Lambda view" built in a temporary directory:
the worker's ``app.py`` alone (``/var/task``), copies of the layers' packages (``/opt/python``:
the pins of layers/dependencies/requirements.txt, the ``mailroom`` package, and aws-xray-sdk
with its dependencies that are not in the layer or the runtime), and boto3 with its
dependencies (the python3.13 runtime provides them). Python starts with ``-S``: nothing else
of the dev venv is importable, so X-Ray's ``patch_all`` patches only what Lambda would have
(botocore and sqlite3). ``LAMBDA_TASK_ROOT`` and ``AWS_LAMBDA_FUNCTION_NAME`` are set, so
Tracer is enabled and patches, as in Lambda; the function's environment comes from
template.yaml, with fake credentials and no AWS config files.

Bytecode. The layers are built with ``--no-compile`` and their ``__pycache__`` removed
(layers/*/Makefile), and ``/opt`` is read-only in Lambda: Python compiles the layers' modules
from source at every cold start. Both cases are measured: "cached" (the copies compiled
beforehand) and "none" (no bytecode, none written: compiled at import, as in Lambda). The
standard library and boto3 keep their bytecode in both (we assume the runtime image ships
it; not checked).

Not Lambda: this machine's Python and the dev venv's wheels (x86_64), not python3.13 on
arm64. The absolute figures will differ there; the report says so.

Side effect: the X-Ray SDK, when it believes it runs in Lambda, touches
``/tmp/.aws-xray/initialized``. Nothing reaches the network. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.run import _table, code_commit

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
FUNCTION = "NewsletterWorkerFunction"
FUNCTION_DIR = ROOT / "functions" / "newsletter_worker"
MAILROOM = ROOT / "layers" / "mailroom" / "mailroom"
LAYER_REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
RUNTIME_PACKAGE = "boto3"  # the python3.13 runtime provides boto3 and its dependencies
XRAY = "aws-xray-sdk"  # what aws-lambda-powertools[tracer] adds
REGION = "us-east-1"
# As Lambda sets it for a sampled invocation (Root, the function segment as Parent, Sampled=1).
TRACE_HEADER = "Root=1-6748a1f0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
MIN_RUNS = 9


def _log(message: str) -> None:
    print(f"bench.tracing: {message}", file=sys.stderr, flush=True)


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


# ------------------------------------------------------------------------------ packages
def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_pins(path: Path = LAYER_REQUIREMENTS) -> list[str]:
    """The distributions the dependencies layer installs (``name==version`` lines)."""
    names = []
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            names.append(_canonical(re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0]))
    return names


def closure(names: Iterable[str]) -> set[str]:
    """``names`` and everything they require, from the installed metadata (extras left out)."""
    seen: set[str] = set()
    todo = [_canonical(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in metadata.distribution(name).requires or []:
            if "extra ==" in requirement.replace('"', "").replace("'", ""):
                continue
            todo.append(_canonical(re.split(r"[=<>!~\[;( ]", requirement.strip(), maxsplit=1)[0]))
    return seen


def _files(name: str) -> list[Path]:
    """The installed files of a distribution (its RECORD), without bytecode or scripts."""
    dist = metadata.distribution(name)
    files = []
    for entry in dist.files or []:
        if entry.parts[0] == ".." or "__pycache__" in entry.parts or entry.suffix == ".pyc":
            continue
        files.append(Path(str(dist.locate_file(entry))))
    return files


def size_on_disk(name: str) -> int:
    return sum(path.stat().st_size for path in _files(name) if path.is_file())


def top_level(name: str) -> list[Path]:
    """The top-level entries of a distribution in site-packages (packages, modules, dist-info)."""
    dist = metadata.distribution(name)
    tops = {entry.parts[0] for entry in dist.files or [] if entry.parts[0] not in ("..", "__pycache__")}
    return sorted(Path(str(dist.locate_file(top))) for top in tops)


@dataclass(frozen=True)
class Packages:
    layer: list[str]  # the dependencies layer today
    runtime: set[str]  # boto3 and its dependencies: the Lambda runtime's
    xray: set[str]  # aws-xray-sdk and everything it requires
    xray_new: list[str]  # of those, in neither the layer nor the runtime: what the layer must add
    xray_runtime: list[str]  # of those, the runtime's: what an unrestricted `make lock` would pin too

    @classmethod
    def find(cls) -> Packages:
        layer = layer_pins()
        runtime = closure([RUNTIME_PACKAGE])
        xray = closure([XRAY])
        new = sorted(xray - set(layer) - runtime)
        in_runtime = sorted((xray & runtime) - set(layer))
        return cls(layer=layer, runtime=runtime, xray=xray, xray_new=new, xray_runtime=in_runtime)


# ------------------------------------------------------------------------------ the Lambda view
@dataclass(frozen=True)
class View:
    """A function directory, a layer directory and the runtime's packages, as Lambda lays them out."""

    task: Path
    opt: Path
    runtime: Path
    compiled: bool

    @property
    def pythonpath(self) -> str:
        return os.pathsep.join(str(path) for path in (self.task, self.opt, self.runtime))


def _copy(source: Path, target_dir: Path) -> None:
    target = target_dir / source.name
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source, target)


def build_view(base: Path, packages: Packages, compiled: bool) -> View:
    view = View(task=base / "task", opt=base / "opt" / "python", runtime=base / "runtime", compiled=compiled)
    for directory in (view.task, view.opt, view.runtime):
        directory.mkdir(parents=True)
    shutil.copy2(FUNCTION_DIR / "app.py", view.task / "app.py")  # SAM copies app.py only
    _copy(MAILROOM, view.opt)
    for name in [*packages.layer, *packages.xray_new, XRAY]:
        for top in top_level(name):
            if not (view.opt / top.name).exists():
                _copy(top, view.opt)
    for name in sorted(packages.runtime - set(packages.layer)):
        for top in top_level(name):
            _copy(top, view.runtime)
    # compiled in both cases, as the runtime image ships them (the dev venv holds no bytecode
    # where PYTHONDONTWRITEBYTECODE is set: a link into it compiled boto3 at every sample)
    compileall.compile_dir(view.runtime, quiet=2, workers=1)
    if compiled:
        for directory in (view.task, view.opt):
            compileall.compile_dir(directory, quiet=2, workers=1)
    return view


def child_env(view: View, function_env: dict[str, str], base: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": view.pythonpath,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(view.task),
        "AWS_LAMBDA_FUNCTION_NAME": "mailroom-newsletter-worker",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": str(base / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(base),
    }
    env.update(function_env)
    env.update(extra)
    return env


def _run(code: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"a sample failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


# ------------------------------------------------------------------------------ 1. import time
IMPORT_CODE = """
import sys, time
n0 = len(sys.modules)
t0 = time.perf_counter()
{body}
t1 = time.perf_counter()
import botocore.client
patched = type(botocore.client.BaseClient._make_api_call).__name__ != "function"
print(f"{{(t1 - t0) * 1000:.3f}} {{len(sys.modules) - n0}} {{int('aws_xray_sdk' in sys.modules)}} {{int(patched)}}")
"""

TRACER = "from aws_lambda_powertools import Tracer\nTracer()"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    body: str
    env: dict[str, str] = field(default_factory=dict)


SCENARIOS = [
    Scenario("a", "`import boto3`", "import boto3"),
    Scenario("b", "the newsletter worker's `app.py` (no Tracer)", "import app"),
    Scenario("c", "the same + `Tracer()` (imports aws_xray_sdk, patches)", f"{TRACER}\nimport app"),
    Scenario(
        "c0",
        "the same + `Tracer()` with `POWERTOOLS_TRACE_DISABLED=true` (imports, no patching)",
        f"{TRACER}\nimport app",
        {"POWERTOOLS_TRACE_DISABLED": "true"},
    ),
    Scenario("d", "`import aws_xray_sdk.core` alone", "import aws_xray_sdk.core"),
]


@dataclass
class Samples:
    ms: list[float] = field(default_factory=list)
    modules: int = 0
    xray_loaded: bool = False
    patched: bool = False


def measure_imports(
    views: Sequence[View], function_env: dict[str, str], base: Path, runs: int
) -> dict[tuple[str, bool], Samples]:
    samples = {(scenario.key, view.compiled): Samples() for scenario in SCENARIOS for view in views}
    for round_ in range(runs + 1):  # round 0 warms the file cache and is thrown away
        for view in views:
            for scenario in SCENARIOS:
                env = child_env(view, function_env, base, **scenario.env)
                out = _run(IMPORT_CODE.format(body=scenario.body), env, view.task).split()
                if round_ == 0:
                    continue
                sample = samples[(scenario.key, view.compiled)]
                sample.ms.append(float(out[0]))
                sample.modules, sample.xray_loaded, sample.patched = int(out[1]), out[2] == "1", out[3] == "1"
        _log(f"imports: round {round_}/{runs} done")
    return samples


# ------------------------------------------------------------------------------ 2. per-call CPU
CALL_CODE = """
import os, socket, sys, time
daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
daemon.bind(("127.0.0.1", 0))
daemon.setblocking(False)
os.environ["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:%d" % daemon.getsockname()[1]
{setup}
import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from mailroom.adapters.aws import CONFIG

class Body:
    def __init__(self, data):
        self.data = data
    def stream(self, **_):
        yield self.data

DATA = b'{{"Item":{{"pk":{{"S":"campaign#0"}},"sk":{{"S":"0"}},"status":{{"S":"sent"}}}}}}'
HEADERS = {{"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "bench"}}

def answer(request, **_):
    return AWSResponse(request.url, 200, HTTPHeaders.from_dict(HEADERS), Body(DATA))

client = boto3.client("dynamodb", config=CONFIG)
client.meta.events.register("before-send.dynamodb.GetItem", answer)
KEY = {{"pk": {{"S": "campaign#0"}}, "sk": {{"S": "0"}}}}
os.environ["_X_AMZN_TRACE_ID"] = {trace!r}  # inside a sampled invocation

def drain():
    count = 0
    while True:
        try:
            daemon.recv(65536)
        except BlockingIOError:
            return count
        count += 1

for _ in range(200):
    client.get_item(TableName="ResultsTable", Key=KEY)
drain()
c0, w0 = time.thread_time(), time.perf_counter()
for _ in range({calls}):
    client.get_item(TableName="ResultsTable", Key=KEY)
cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
drain()
for _ in range(10):
    client.get_item(TableName="ResultsTable", Key=KEY)
time.sleep(0.05)
print(f"{{cpu / {calls} * 1e6:.1f}} {{wall / {calls} * 1e6:.1f}} {{drain()}}")
"""


@dataclass
class CallSamples:
    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)
    datagrams_per_10: int = 0


def measure_calls(
    view: View, function_env: dict[str, str], base: Path, runs: int, calls: int
) -> dict[str, CallSamples]:
    setups = {"without": "", "with": TRACER}
    samples = {key: CallSamples() for key in setups}
    for round_ in range(runs + 1):
        for key, setup in setups.items():
            code = CALL_CODE.format(setup=setup, trace=TRACE_HEADER, calls=calls)
            out = _run(code, child_env(view, function_env, base), view.task).split()
            if round_ == 0:
                continue
            samples[key].cpu_us.append(float(out[0]))
            samples[key].wall_us.append(float(out[1]))
            samples[key].datagrams_per_10 = int(out[2])
    _log("per-call CPU done")
    return samples


# ------------------------------------------------------------------------------ the report
def _mb(size: int) -> str:
    return f"{size / 1_000_000:.2f} MB"


def _bytecode(compiled: bool) -> str:
    return "cached" if compiled else "none (compiled at import)"


def _paired(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [y - x for x, y in zip(a, b, strict=True)]


def report(
    packages: Packages,
    imports: dict[tuple[str, bool], Samples],
    calls: dict[str, CallSamples] | None,
    runs: int,
    call_runs: int,
    call_count: int,
) -> list[str]:
    lines = ["## 1. Import time (ms, in a fresh process, interpreter start-up not included)", ""]
    rows = []
    for scenario in SCENARIOS:
        for compiled in (True, False):
            sample = imports[(scenario.key, compiled)]
            rows.append(
                [
                    f"({scenario.key}) {scenario.label}",
                    _bytecode(compiled),
                    f"{statistics.median(sample.ms):.1f}",
                    f"{_p90(sample.ms):.1f}",
                    sample.modules,
                    "yes" if sample.xray_loaded else "no",
                    "yes" if sample.patched else "no",
                ]
            )
    lines += _table(
        ["imported", "layer bytecode", "median", "p90", "modules loaded", "X-Ray SDK loaded", "botocore patched"], rows
    )
    lines += ["", f"{runs} runs each, interleaved. Added by Tracer (median of the per-round differences):", ""]
    rows = []
    for compiled in (True, False):
        base = imports[("b", compiled)].ms
        for key, what in (("c", "Tracer() (c - b)"), ("c0", "Tracer() disabled (c0 - b)")):
            diff = _paired(base, imports[(key, compiled)].ms)
            median_base = statistics.median(base)
            rows.append(
                [
                    what,
                    _bytecode(compiled),
                    f"**{statistics.median(diff):+.1f} ms**",
                    f"{_p90(diff):+.1f} ms",
                    f"{statistics.median(diff) / median_base:+.0%} of the worker's {median_base:.0f} ms",
                ]
            )
    lines += _table(["added", "layer bytecode", "median", "p90", "relative"], rows)

    if calls is not None:
        lines += ["", "## 2. CPU per AWS call (DynamoDB GetItem answered inside botocore, in an invocation)", ""]
        rows = []
        for key, label in (("without", "botocore as is"), ("with", "botocore patched by Tracer()")):
            call = calls[key]
            rows.append(
                [
                    label,
                    f"{statistics.median(call.cpu_us):.0f} µs",
                    f"{_p90(call.cpu_us):.0f} µs",
                    f"{statistics.median(call.wall_us):.0f} µs",
                    f"{call.datagrams_per_10} of 10",
                ]
            )
        diff = _paired(calls["without"].cpu_us, calls["with"].cpu_us)
        unpatched = statistics.median(calls["without"].cpu_us)
        lines += _table(["client", "CPU per call, median", "p90", "wall per call, median", "subsegments sent"], rows)
        lines += [
            "",
            f"{call_runs} runs of {call_count:,} calls each. Added by the patch: "
            f"**{statistics.median(diff):+.0f} µs CPU per call** (median of the paired differences, "
            f"{statistics.median(diff) / unpatched:+.0%}).",
        ]

    lines += ["", "## 3. What adding aws-xray-sdk to the dependencies layer adds (installed size, no bytecode)", ""]
    layer_total = sum(size_on_disk(name) for name in packages.layer)
    rows = []
    new_total = 0
    for name in packages.xray_new:
        size = size_on_disk(name)
        new_total += size
        rows.append([f"{name} {metadata.version(name)}", "needed (not in the layer, not in the runtime)", _mb(size)])
    runtime_total = 0
    for name in packages.xray_runtime:
        size = size_on_disk(name)
        runtime_total += size
        why = "the runtime has it; `make lock` would pin it unless told not to"
        rows.append([f"{name} {metadata.version(name)}", why, _mb(size)])
    added = f"**{_mb(new_total)}** ({new_total / layer_total:+.1%} on the layer's {_mb(layer_total)})"
    rows.append(["**needed**", "", added])
    rows.append(["with the runtime's packages too", "", f"{_mb(new_total + runtime_total)}"])
    lines += _table(["distribution (dev venv)", "", "size"], rows)
    return lines


def _environment() -> str:
    commit = code_commit("functions/newsletter_worker", "layers")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"commit {commit}; Python {platform.python_version()} on {platform.machine()} ({platform.system()}), "
        f"{os.cpu_count()} CPUs, load average {load} at the start; aws-lambda-powertools "
        f"{metadata.version('aws-lambda-powertools')}, {XRAY} {metadata.version(XRAY)}, "
        f"boto3 {metadata.version('boto3')}, botocore {metadata.version('botocore')}. "
        "Not Lambda (python3.13 on arm64): absolute figures differ there."
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21, help=f"import samples per scenario (>= {MIN_RUNS}; default 21)")
    parser.add_argument("--call-runs", type=int, default=9, help=f"per-call samples (>= {MIN_RUNS}; default 9)")
    parser.add_argument("--calls", type=int, default=3000, help="AWS calls per per-call sample (default 3000)")
    parser.add_argument("--skip-calls", action="store_true", help="measure only the imports and the sizes")
    args = parser.parse_args(argv)
    if args.runs < MIN_RUNS or args.call_runs < MIN_RUNS:
        parser.error(f"--runs and --call-runs must be at least {MIN_RUNS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from mailroom_local.template import Stack  # type: ignore[import-not-found, unused-ignore]

    args = _arguments(argv)
    environment = _environment()
    packages = Packages.find()
    function_env = Stack.load(TEMPLATE).function_env(FUNCTION)
    _log(f"layer: {len(packages.layer)} distributions; aws-xray-sdk would add {packages.xray_new}")
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        base = Path(tmp)
        views = [build_view(base / name, packages, compiled) for name, compiled in (("cached", True), ("none", False))]
        imports = measure_imports(views, function_env, base, args.runs)
        calls = None if args.skip_calls else measure_calls(views[0], function_env, base, args.call_runs, args.calls)
    lines = [
        "# Powertools Tracer: import time, per-call cost, layer size (issue #8)",
        "",
        f"`python -m bench.tracing` - {environment}",
        "",
        *report(packages, imports, calls, args.runs, args.call_runs, args.calls),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
