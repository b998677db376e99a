"""Every external program the tests run comes from a `hack/` build step or a declared prerequisite, never from
`PATH` by luck: `make test` on a fresh machine (Python, Go and Docker's installer only) must find each of them.

Read from the tests' source (their `ast`): the first word of every `subprocess` call and `shutil.which` lookup, and
the tool of every `charttools.run`, checked against what `hack/tools/build.sh` builds and the README's prerequisites.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
PREREQUISITES = {"go", "bash", "make", "git"}
"""What a fresh machine must have besides Python: Go (CONTRIBUTING says so), a shell, and make and git, which
.ci/run installs where missing; everything else comes from hack/."""
INSTALLED_BY_HACK = {"/usr/bin/docker": "hack/docker/start-dockerd.sh"}
"""Absolute paths the tests call, each with the hack/ script that installs it when missing."""
CALLS = {
    "subprocess": ("subprocess", {"run", "Popen", "check_output", "check_call", "call"}),
    "which": ("shutil", {"which"}),
    "charttools": ("charttools", {"run"}),
}
"""What each kind of call looks like: its module's name and its functions; the program is the first argument."""


def built_tools() -> set[str]:
    """The binaries `hack/tools/build.sh` builds or takes from the cache (its `fetch_or_build KEY FUNC BIN…`)."""
    script = (ROOT / "hack" / "tools" / "build.sh").read_text()
    return {b for line in re.findall(r"^\s*fetch_or_build \S+ \S+ (.+)$", script, re.M) for b in line.split()}


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def calls(kind: str) -> Iterator[tuple[str, str]]:
    """(where, program) for each `subprocess`, `which` or `charttools` call of the tests with a literal program."""
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or not node.args:
                continue
            owner, name, first = node.func.value, node.func.attr, node.args[0]
            owner_name = owner.id if isinstance(owner, ast.Name) else None
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            wanted_owner, wanted_names = CALLS[kind]
            if owner_name != wanted_owner or name not in wanted_names:
                continue
            if kind == "subprocess":
                program = _literal(first.elts[0]) if isinstance(first, ast.List) and first.elts else None
            else:
                program = _literal(first)
            if program is not None:
                yield where, program


def test_the_guard_sees_the_calls_it_checks() -> None:
    assert "helm" in built_tools() and "promtool" in built_tools()
    assert any(program == "promtool" for _, program in calls("charttools"))
    assert any(program == "/usr/bin/docker" for _, program in calls("subprocess"))


def test_programs_run_by_the_tests_come_from_hack_or_the_prerequisites() -> None:
    allowed = PREREQUISITES | set(INSTALLED_BY_HACK)
    stray = [f"{where}: {program}" for where, program in calls("subprocess") if program not in allowed]
    assert not stray, (
        "tests run programs that a fresh machine does not have; build them in hack/tools/build.sh and run them "
        f"through charttools.run, or install them from a hack/ script: {stray}"
    )


def test_no_test_looks_a_tool_up_on_path() -> None:
    stray = [f"{where}: {program}" for where, program in calls("which") if program not in PREREQUISITES]
    assert not stray, f"a tool found on PATH by luck; take it from hack/tools/build.sh instead: {stray}"


def test_every_chart_tool_is_built_by_hack() -> None:
    missing = [
        f"{where}: {program}" for where, program in calls("charttools") if program not in built_tools()
    ]
    assert not missing, f"charttools.run names tools hack/tools/build.sh does not build: {missing}"


def test_the_hack_installers_exist_and_install_what_the_tests_call() -> None:
    for program, script in INSTALLED_BY_HACK.items():
        text = (ROOT / script).read_text()
        assert "apt-get install" in text and Path(program).name in text, (
            f"{script} does not install {program}"
        )
