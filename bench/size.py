"""``python -m bench.size``: the size of what ``sam build`` ships, and what in it is wasted (issue #9).

For each function and layer of the build (``.aws-sam/build/template.yaml`` maps the logical
ids to their ``CodeUri`` / ``ContentUri`` folders): the files, their bytes unzipped, and the
bytes of a zip of the folder made in memory with ``zipfile.ZIP_DEFLATED`` at zlib's default
level (6), as the SAM CLI zips an artifact for upload (``make_zip``); Lambda's limits are on
these two figures (250 MB unzipped for a function and its layers, 50 MB zipped for an upload).

Two checks, each a finding with its bytes:

1. What the python3.13 runtime already provides: its bundled SDK (boto3, botocore, s3transfer,
   jmespath, urllib3, python-dateutil, six, and whatever boto3 requires), in any function or
   layer. Files are attributed to distributions through the ``*.dist-info/RECORD`` files of the
   build, the top-level names as a fallback.
2. Top-level packages of the dependencies layer that no function imports, directly or through
   what they import. Measured, not read from the code: each handler module is imported in
   bench.coldstart's Lambda view (the dev venv's copies of the layer's pins) and the top-level
   entries of ``/opt/python`` in ``sys.modules`` are collected; the packages our code imports
   inside functions (at invoke time; found with ``ast``) are imported too, and ``tzdata``
   counts as used wherever ``zoneinfo`` was loaded. A package that a library imports only
   inside a call at invoke time would be missed: the table says what each package's use
   rests on. Console scripts (``bin/``) never run in Lambda and are findings too.

A package kept on purpose (``KEPT``: the package and why; none today) is no finding of either
check: it is reported apart, as kept, with its reason and its measured use. The bytecode of a
top-level module (``__pycache__/NAME.cpython-313.pyc``, the layer's Makefile compiles it) counts
as the module's.

It also lists the largest top-level packages of the dependencies layer, with the bytes of
their files that the functions actually load (modules and extensions), where trimming starts.

If the build is missing, ``make build`` runs first (``--no-build``: use what is there).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.coldstart import Probe, lazy_imports, probe_all
from bench.run import _table, _yes
from bench.tracing import RUNTIME_PACKAGE, _canonical, closure

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / ".aws-sam" / "build"
DEPENDENCIES = "DependenciesLayer"
# The SDK the python3.13 runtime bundles (and boto3's requirements, added from the dev venv's metadata).
RUNTIME_DISTRIBUTIONS = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
RUNTIME_TOP_LEVEL = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py"}
LARGEST = 10
NOT_RUN = {".pyi", ".c", ".h", ".pyx", ".pxd"}  # type stubs and C sources: read by no import
# Distributions kept on purpose, and why: reported as kept, never as a finding. Each must say what
# the measurement here cannot see (the probes run on this host, not on the Lambda image).
# None today (tzdata was, as zoneinfo's fallback, until it turned out no function uses zoneinfo).
KEPT: dict[str, str] = {}


def _log(message: str) -> None:
    print(f"bench.size: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the build
@dataclass(frozen=True)
class Artifact:
    logical_id: str
    kind: str  # "function" or "layer"
    path: Path
    files: int
    unzipped: int
    zipped: int


def _files(path: Path) -> list[Path]:
    return sorted(item for item in path.rglob("*") if item.is_file() and not item.is_symlink())


def _bytes(paths: Iterable[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def zipped_size(path: Path) -> int:
    """The size of a zip of ``path``'s files, made in memory as the SAM CLI makes it (deflate, level 6)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for item in _files(path):
            archive.write(item, item.relative_to(path).as_posix())
    return buffer.getbuffer().nbytes


def artifacts(build_dir: Path) -> list[Artifact]:
    """The functions and layers of the built template, with their sizes."""
    from mailroom_local.cfn import load_template  # type: ignore[import-not-found, unused-ignore]

    template: dict[str, Any] = load_template(build_dir / "template.yaml")
    found = []
    for logical_id, resource in sorted((template.get("Resources") or {}).items()):
        kind = {"AWS::Serverless::Function": "function", "AWS::Serverless::LayerVersion": "layer"}.get(
            str(resource.get("Type"))
        )
        if kind is None:
            continue
        properties = resource.get("Properties") or {}
        uri = properties.get("CodeUri" if kind == "function" else "ContentUri")
        if not isinstance(uri, str):
            continue
        path = (build_dir / uri).resolve()
        files = _files(path)
        found.append(Artifact(logical_id, kind, path, len(files), _bytes(files), zipped_size(path)))
    found.sort(key=lambda item: (item.kind != "layer", item.logical_id))
    return found


def ensure_build(build_dir: Path) -> None:
    if (build_dir / "template.yaml").is_file():
        return
    if build_dir == BUILD_DIR:
        _log(f"{build_dir} has no build: running make build")
        subprocess.run(["make", "build"], cwd=ROOT, check=True, stdout=sys.stderr)
    else:
        _log(f"{build_dir} has no build: running sam build --build-dir {build_dir}")
        env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        sam = str(ROOT / ".tools" / "sam" / "bin" / "sam")
        subprocess.run([sam, "build", "--build-dir", str(build_dir)], cwd=ROOT, env=env, check=True, stdout=sys.stderr)


# ------------------------------------------------------------------------------ distributions
@dataclass
class Entry:
    """A top-level entry (package, module, dist-info, bin) of an artifact's import root."""

    name: str
    distribution: str  # canonical name, "" if no RECORD names it
    files: int = 0
    size: int = 0


def _root(artifact: Artifact) -> Path:
    return artifact.path / "python" if artifact.kind == "layer" else artifact.path


def _owners(root: Path) -> dict[str, str]:
    """Top-level entry -> distribution, from the RECORD files (``../../bin/x`` is the ``bin`` entry)."""
    owners: dict[str, str] = {}
    for record in sorted(root.glob("*.dist-info/RECORD")):
        metadata = (record.parent / "METADATA").read_text(errors="replace")
        match = re.search(r"^Name: *(.+)$", metadata, re.MULTILINE)
        name = _canonical(match.group(1).strip() if match else record.parent.name.split("-")[0])
        for line in record.read_text().splitlines():
            path = line.rsplit(",", 2)[0]
            parts = [part for part in Path(path).parts if part != ".."]
            if parts:
                owners.setdefault(parts[0], name)
    return owners


def entries(artifact: Artifact) -> list[Entry]:
    root = _root(artifact)
    if not root.is_dir():
        return []
    owners = _owners(root)
    found: dict[str, Entry] = {}
    cache = root / "__pycache__"
    for item in sorted(root.iterdir()):
        if item == cache:
            continue
        files = _files(item) if item.is_dir() else [item]
        found[item.name] = Entry(item.name, owners.get(item.name, ""), len(files), _bytes(files))
    # The bytecode of the top-level modules (typing_extensions.py): each module's own.
    for pyc in _files(cache) if cache.is_dir() else []:
        module = found.get(pyc.name.split(".", 1)[0] + ".py")
        entry = module or found.setdefault(cache.name, Entry(cache.name, ""))
        entry.files += 1
        entry.size += pyc.stat().st_size
    return sorted(found.values(), key=lambda entry: entry.name)


# ------------------------------------------------------------------------------ the checks
@dataclass(frozen=True)
class Finding:
    check: str  # "runtime", "unused", "scripts", "not run"
    artifact: str
    what: str
    size: int
    why: str


@dataclass(frozen=True)
class Kept:
    """What a check would have found, in a distribution kept on purpose (``KEPT``)."""

    artifact: str
    distribution: str
    what: str  # its top-level entries
    size: int
    used_by: list[str]  # the functions measured loading it (on this host: see the reason)
    why: str


@dataclass(frozen=True)
class Package:
    """A top-level package of the dependencies layer."""

    name: str
    distribution: str
    size: int  # its files, dist-info not included
    loaded_size: int  # of those, the files some function loads (modules, extensions)
    used_by: list[str]  # the functions that load it


@dataclass(frozen=True)
class Sizes:
    build_dir: Path
    artifacts: list[Artifact]
    findings: list[Finding]
    packages: list[Package]  # the dependencies layer's, largest first
    probes: list[Probe] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)

    def total(self, kind: str | None = None, zipped: bool = False) -> int:
        return sum(a.zipped if zipped else a.unzipped for a in self.artifacts if kind in (None, a.kind))

    def wasted(self, check: str | None = None) -> int:
        return sum(f.size for f in self.findings if check in (None, f.check))


def _used(probes: Sequence[Probe]) -> dict[str, list[str]]:
    """Top-level entry of /opt/python -> the functions that load it (at import or at invoke time).

    zoneinfo reads the ``tzdata`` package when the system has no zone files: tzdata counts as
    used by every function if our code imports zoneinfo anywhere (loading zoneinfo proves
    nothing: pydantic imports it for its types).
    """
    zones = "zoneinfo" in lazy_imports(everywhere=True)
    used: dict[str, list[str]] = {}
    for found in probes:
        names = set(found.opt) | set(found.opt_lazy) | ({"tzdata"} if zones else set())
        for name in names:
            used.setdefault(name, []).append(found.function)
    return used


def _loaded_bytes(root: Path, probes: Sequence[Probe]) -> dict[str, int]:
    loaded: set[str] = set()
    for found in probes:
        loaded.update(found.opt_files)
    sizes: dict[str, int] = {}
    for relative in loaded:
        path = root / relative
        # An extension module loaded here (x86_64, this Python) is the build's of another ABI tag.
        matches = [path] if path.is_file() else sorted(path.parent.glob(path.name.split(".", 1)[0] + ".*.so"))
        top = relative.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + _bytes(matches)
    return sizes


class _Keeper:
    """The kept-on-purpose distributions (``KEPT``) that the checks meet, each reported once per artifact."""

    def __init__(self, used: dict[str, list[str]]) -> None:
        self.used = used
        self.kept: list[Kept] = []

    def keep(self, artifact: str, parts: Sequence[Entry]) -> bool:
        """Whether these entries (one distribution's) are kept on purpose; if so, reported as kept."""
        distribution = next((e.distribution or e.name for e in parts if (e.distribution or e.name) in KEPT), "")
        if not distribution:
            return False
        if not any(k.artifact == artifact and k.distribution == distribution for k in self.kept):
            users = sorted({user for e in parts for user in self.used.get(e.name, [])})
            what = ", ".join(e.name for e in parts)
            size = sum(e.size for e in parts)
            self.kept.append(Kept(artifact, distribution, what, size, users, KEPT[distribution]))
        return True


def _not_run(artifact: Artifact) -> Finding | None:
    stubs = [path for path in _files(_root(artifact)) if path.suffix in NOT_RUN or path.name == "py.typed"]
    if not stubs:
        return None
    what = f"{len(stubs)} type stubs, py.typed markers and C sources (*.pyi, *.c, ...)"
    return Finding("not run", artifact.logical_id, what, _bytes(stubs), "no import reads them")


def check(items: Sequence[Artifact], probes: Sequence[Probe]) -> tuple[list[Finding], list[Package], list[Kept]]:
    runtime = {_canonical(name) for name in RUNTIME_DISTRIBUTIONS} | closure([RUNTIME_PACKAGE])
    used = _used(probes)
    keeper = _Keeper(used)
    findings: list[Finding] = []
    packages: list[Package] = []
    for artifact in items:
        listed = entries(artifact)
        provided: dict[str, list[Entry]] = {}
        for entry in listed:
            if entry.name == "bin":
                findings.append(
                    Finding("scripts", artifact.logical_id, "bin/ (console scripts)", entry.size, "never run in Lambda")
                )
            elif entry.distribution in runtime or entry.name in RUNTIME_TOP_LEVEL:
                provided.setdefault(entry.distribution or entry.name, []).append(entry)
        for distribution, parts in sorted(provided.items()):
            if keeper.keep(artifact.logical_id, parts):
                continue
            findings.append(
                Finding(
                    "runtime",
                    artifact.logical_id,
                    f"{distribution}: {', '.join(e.name for e in parts)}",
                    sum(e.size for e in parts),
                    "the python3.13 runtime provides it (its bundled SDK)",
                )
            )
        if stubs := _not_run(artifact):
            findings.append(stubs)
        if artifact.logical_id != DEPENDENCIES:
            continue
        by_distribution: dict[str, list[Entry]] = {}
        for entry in listed:
            by_distribution.setdefault(entry.distribution, []).append(entry)
        loaded = _loaded_bytes(_root(artifact), probes)
        for entry in listed:
            if entry.name.endswith(".dist-info") or entry.name == "bin":
                continue
            packages.append(
                Package(entry.name, entry.distribution, entry.size, loaded.get(entry.name, 0), used.get(entry.name, []))
            )
            siblings = [e for e in by_distribution.get(entry.distribution, []) if e.name.endswith(".dist-info")]
            # kept on purpose: reported as kept (with its measured use), whether some function loads it or not
            if (
                keeper.keep(artifact.logical_id, [entry, *siblings])
                or entry.name in used
                or entry.distribution in runtime
            ):
                continue
            findings.append(
                Finding(
                    "unused",
                    artifact.logical_id,
                    f"{entry.name} ({entry.distribution}, with its dist-info)",
                    entry.size + sum(e.size for e in siblings),
                    "no function loads it, at import or through the imports our code makes at invoke time",
                )
            )
    packages.sort(key=lambda package: -package.size)
    return findings, packages, keeper.kept


def measure(build_dir: Path = BUILD_DIR, build: bool = True) -> Sizes:
    """Sizes and findings of the build in ``build_dir`` (built first if missing and ``build``)."""
    if build:
        ensure_build(build_dir)
    if not (build_dir / "template.yaml").is_file():
        raise FileNotFoundError(f"no sam build in {build_dir} (run make build)")
    items = artifacts(build_dir)
    _log(f"{len(items)} artifacts measured; probing the handlers' imports")
    probes = probe_all()
    findings, packages, kept = check(items, probes)
    return Sizes(build_dir, items, findings, packages, probes, kept)


# ------------------------------------------------------------------------------ the report
def _mb(size: int) -> str:
    return f"{size / 1_000_000:.2f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def table(result: Sizes) -> list[str]:
    rows: list[list[object]] = [
        [f"{a.logical_id} ({a.kind})", a.files, _mb(a.unzipped), _mb(a.zipped)] for a in result.artifacts
    ]
    rows.append(
        [
            "**all**",
            sum(a.files for a in result.artifacts),
            f"**{_mb(result.total())}**",
            f"**{_mb(result.total(zipped=True))}**",
        ]
    )
    lines = _table(["artifact (sam build)", "files", "unzipped", "zipped (deflate 6)"], rows)
    lines += ["", "Wasted (findings):", ""]
    rows = [[f.check, f.artifact, f.what, _mb(f.size), f.why] for f in result.findings]
    rows.append(["**all**", "", "", f"**{_mb(result.wasted())}**", ""])
    lines += _table(["check", "artifact", "what", "unzipped", "why"], rows)
    functions = len(result.probes)
    if result.kept:
        lines += ["", "Kept on purpose (not findings; bench.size's KEPT, with why):", ""]
        rows = [
            [
                k.artifact,
                f"{k.distribution}: {k.what}",
                _mb(k.size),
                f"{len(k.used_by)} of {functions}" if k.used_by else "none",
                k.why,
            ]
            for k in result.kept
        ]
        lines += _table(["artifact", "what", "unzipped", "functions loading it here", "why"], rows)
    lines += ["", f"The {LARGEST} largest top-level packages of the dependencies layer:", ""]
    rows = []
    for package in result.packages[:LARGEST]:
        users = len(package.used_by)
        rows.append(
            [
                package.name,
                package.distribution,
                _mb(package.size),
                _mb(package.loaded_size) if users else "-",
                f"{users} of {functions}" if users else "**none**",
            ]
        )
    lines += _table(["package", "distribution", "unzipped", "of it loaded by the functions", "functions"], rows)
    lines += [
        "",
        f"Build: {result.build_dir}. Zipped with Python's zipfile, ZIP_DEFLATED at zlib's default level, in memory. "
        "Use of a package: measured (each handler imported in the Lambda view, sys.modules' top-level entries).",
    ]
    return lines


def summary_rows(result: Sizes) -> list[tuple[str, str, str, str]]:
    layers, functions = result.total("layer"), result.total("function")
    return [
        (
            "package size: the layers and functions of `sam build`",
            f"{_mb(result.total())} unzipped (layers {_mb(layers)}, functions {_mb(functions)}), "
            f"{_mb(result.total(zipped=True))} zipped",
            "-",
            "-",
        ),
        (
            "package size: what the runtime provides or no function imports",
            f"**{_mb(result.wasted())}** ({len(result.findings)} findings: runtime's {_mb(result.wasted('runtime'))}, "
            f"unused {_mb(result.wasted('unused'))}, scripts and stubs "
            f"{_mb(result.wasted('scripts') + result.wasted('not run'))}; "
            f"kept on purpose: {', '.join(f'{k.distribution} {_mb(k.size)}' for k in result.kept) or 'none'})",
            "nothing",
            _yes(not result.findings),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.size", description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR, help="the sam build output (.aws-sam/build)")
    parser.add_argument("--no-build", action="store_true", help="do not run make build when the build is missing")
    args = parser.parse_args(argv)
    result = measure(args.build_dir, build=not args.no_build)
    summary = _table(["measurement", "result", "goal", "met"], summary_rows(result))
    print("\n".join(["## Package size (issue #9)", "", *table(result), "", *summary]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
