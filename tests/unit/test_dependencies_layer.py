"""The dependencies layer ships what the functions run, and nothing else (issue #9).

layers/dependencies/Makefile leaves out what the Lambda runtime provides or no function
imports (NOT_SHIPPED: jmespath, dnspython; console scripts, type stubs, C sources). These
tests build the layer as sam build does (its Makefile, into a temporary
ARTIFACTS_DIR: pip installs the arm64 wheels, from its cache or the index, a few seconds) and
check that the address validation runs without dnspython.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import ROOT

LAYER = ROOT / "layers" / "dependencies"
# Required by the layer's packages, not shipped (the Makefile's NOT_SHIPPED says why).
NOT_SHIPPED = {"dnspython": "dns", "jmespath": "jmespath"}
NOT_RUN = {".pyi", ".c", ".h", ".pyx", ".pxd"}
OUR_CODE = [*sorted((ROOT / "layers" / "mailroom").rglob("*.py")), *sorted((ROOT / "functions").glob("*/*.py"))]


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            found[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return found


def makefile_not_shipped() -> set[str]:
    match = re.search(r"^NOT_SHIPPED := (.*)$", (LAYER / "Makefile").read_text(), re.MULTILINE)
    assert match, "layers/dependencies/Makefile defines NOT_SHIPPED"
    return set(match.group(1).split())


def build(layer: Path, artifacts: Path) -> subprocess.CompletedProcess[str]:
    """The Makefile in ``layer`` as sam build runs it (PATH with the dev venv's python, for pip)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    variables = [f"ARTIFACTS_DIR={artifacts}", f"PYTHON={sys.executable}"]
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(layer), "build-DependenciesLayer", *variables],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_lock_pins_only_what_ships() -> None:
    locked = pins(LAYER / "requirements.txt")
    assert makefile_not_shipped() == set(NOT_SHIPPED)
    assert not set(locked) & set(NOT_SHIPPED), "make lock leaves NOT_SHIPPED out (--no-emit-package)"
    # written by `make lock` with the current NOT_SHIPPED: uv lists what it left out at the end
    text = (LAYER / "requirements.txt").read_text()
    excluded = text.split("# The following packages were excluded from the output:", 1)
    assert len(excluded) == 2, "requirements.txt is make lock's output"
    assert set(re.findall(r"^# ([a-z0-9-]+)$", excluded[1], re.MULTILINE)) == set(NOT_SHIPPED)


@pytest.fixture(scope="module")
def built_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    artifacts = tmp_path_factory.mktemp("DependenciesLayer")
    done = build(LAYER, artifacts)
    assert done.returncode == 0, done.stdout + done.stderr
    return artifacts / "python"


def test_the_built_layer_ships_every_pin(built_layer: Path) -> None:
    shipped = {re.sub(r"[-_.]+", "-", path.name.split("-", 1)[0]).lower() for path in built_layer.glob("*.dist-info")}
    assert shipped == set(pins(LAYER / "requirements.txt"))


def test_the_built_layer_ships_nothing_the_runtime_provides_or_no_function_imports(built_layer: Path) -> None:
    top = {path.name for path in built_layer.iterdir()}
    for distribution, package in NOT_SHIPPED.items():
        assert package not in top
        assert not [name for name in top if name.lower().startswith(f"{distribution}-")]
    assert "bin" not in top, "console scripts never run in Lambda"
    files = [path for path in built_layer.rglob("*") if path.is_file()]
    not_run = [path for path in files if path.suffix in NOT_RUN or path.name == "py.typed"]
    assert not not_run, "type stubs, py.typed markers and C sources are read by no import"
    assert not [path for path in built_layer.rglob("*") if path.is_dir() and not any(path.iterdir())]


def test_the_build_fails_if_a_package_that_must_not_ship_is_pinned(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "Makefile").write_text((LAYER / "Makefile").read_text())
    (layer / "requirements.txt").write_text("jmespath==1.1.0\n")
    done = build(layer, tmp_path / "artifacts")
    assert done.returncode != 0
    assert "jmespath must not ship" in done.stdout + done.stderr


def test_every_validate_email_call_skips_the_deliverability_check() -> None:
    calls = 0
    for path in OUR_CODE:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not [m for m in modules if m == "dns" or m.startswith(("dns.", "email_validator.deliv"))], path
                if isinstance(node, ast.ImportFrom) and node.module == "email_validator":
                    assert "caching_resolver" not in {a.name for a in node.names}, path
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "validate_email":
                calls += 1
                keywords = {k.arg: k.value for k in node.keywords}
                value = keywords.get("check_deliverability")
                assert isinstance(value, ast.Constant) and value.value is False, f"{path}:{node.lineno}"
    assert calls, "mailroom validates addresses with email_validator.validate_email"


def test_addresses_validate_and_normalise_without_dnspython() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["dns"] = None  # as in the layer: no dnspython
        from email_validator import validate_email
        from mailroom.models import Registration, normalize_email

        assert normalize_email("Ada.Lovelace@Example.COM") == "ada.lovelace@example.com"
        assert normalize_email("ada@bücher.example") == "ada@xn--bcher-kva.example"
        assert Registration(email="  Ada@Example.org ").email == "ada@example.org"
        for bad in ("ada", "ada@", "ada@@example.com", "ädä@example.com"):
            try:
                normalize_email(bad)
            except ValueError:
                pass
            else:
                raise AssertionError(bad)
        assert not [name for name in sys.modules if name == "dns" and sys.modules[name] or name.startswith("dns.")]
        # the block is real: a deliverability check would need dnspython
        try:
            validate_email("ada@example.org", check_deliverability=True)
        except ImportError:
            print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
