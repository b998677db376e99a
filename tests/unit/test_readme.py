"""The README's commands work as written (issue 14), and so do CONTRIBUTING.md's.

From the fenced `sh` and `console` blocks: every `make` target exists in the Makefile (inline `make …` too) and
every `finetune` command parses; the README's `finetune validate` commands really run, printing exactly what the
README shows. Inline `finetune …` synopses name only options that exist. In every Markdown file of the repository,
every linked file and heading exists. Commands that need a cluster (kubectl, kind, helm) are not run here.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from finetune_cli.main import app
from typer.core import TyperGroup
from typer.testing import CliRunner

from tests.invalid_specs import merge

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
BAD_YAML_PATCH = {"spec": {"method": {"type": "qlora"}}}
"""What the README says `bad.yaml` is: the job it shows, with `method: {type: qlora}`."""


def _text(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def _blocks(doc: Path, *langs: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in FENCE.finditer(_text(doc)) if m[1] in langs]


def _steps(lang: str, body: str) -> list[tuple[list[str], list[str]]]:
    """(words, shown output) of each command: every line of an `sh` block (split at && and ;), or each `$ ` line of a
    `console` block with the lines under it. Leading VAR=value words and a trailing `&` are dropped."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.replace("\\\n", " ").splitlines():
        if lang == "sh" and line.strip():
            steps += [(part, []) for part in re.split(r"&&|;", line)]
        elif line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and lang == "console":
            steps[-1][1].append(line)
    out = []
    for command, shown in steps:
        words = shlex.split(command, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words and words[-1] == "&":
            words.pop()
        if words:
            out.append((words, shown))
    return out


def _commands(doc: Path, program: str) -> list[tuple[list[str], list[str]]]:
    return [
        (words, shown)
        for lang, body in _blocks(doc, "sh", "console")
        for words, shown in _steps(lang, body)
        if words[0] == program
    ]


def _make_targets() -> set[str]:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    found = set()
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.\- ]+):(?!=)", line)
        if match:
            found |= set(match[1].split())
    return found - {".PHONY"}


def _cli() -> TyperGroup:
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    return command


def _expand(words: list[str], folder: Path) -> list[str]:
    """`words` with each `*` pattern replaced by the paths it matches in `folder`, as the shell would."""
    out = []
    for word in words:
        found = sorted(str(p.relative_to(folder)) for p in folder.glob(word)) if "*" in word else []
        out += found or [word]
    return out


def _parse(words: list[str]) -> Any:
    """Parse a `finetune …` command line as the CLI would, without running it; raises its usage errors."""
    group = _cli()
    parent = group.make_context("finetune", words[1:2])
    sub = group.get_command(parent, words[1])
    assert sub is not None, f"no command `finetune {words[1]}`"
    return sub.make_context(words[1], _expand(words[2:], ROOT), parent=parent)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", _text(doc))
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_make_target_exists(doc: Path) -> None:
    inline = [["make", *span.split()] for span in re.findall(r"`make ([^`]+)`", _text(doc))]
    lines = [words for words, _ in _commands(doc, "make")] + inline
    named = {w for words in lines for w in words[1:] if not w.startswith("-")}
    assert named, f"{doc.name} names no make target"
    assert named <= _make_targets(), f"{doc.name} names make targets the Makefile lacks"


def test_the_first_screen_keeps_its_two_commands() -> None:
    section = _text(ROOT / "README.md").split("## On a fresh machine\n", 1)[1]
    first = FENCE.search(section)
    assert first is not None
    assert [words for words, _ in _steps(first[1], first[2])] == [["make", "demo"], ["make", "test"]]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_finetune_command_parses(doc: Path) -> None:
    for words, _ in _commands(doc, "finetune"):
        _parse(words)


def test_a_bad_option_does_not_parse() -> None:
    with pytest.raises(Exception, match="No such option: --max-step"):
        _parse(["finetune", "run", "examples/tiny-lora.yaml", "--max-step", "6"])


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_inline_synopses_name_real_options(doc: Path) -> None:
    group = _cli()
    for synopsis in re.findall(r"`(finetune [^`]+)`", _text(doc)):
        name = synopsis.split()[1]
        command = group.commands.get(name)
        assert command is not None, f"`{synopsis}`: no command {name}"
        options = {opt for param in command.params for opt in param.opts}
        assert set(re.findall(r"--[a-z][a-z-]*", synopsis)) <= options, f"`{synopsis}`"


def _bad_yaml() -> dict[str, Any]:
    readme = _text(ROOT / "README.md")
    assert "`bad.yaml` is the job above with `method: {type: qlora}`" in " ".join(readme.split())
    job = yaml.safe_load(_blocks(ROOT / "README.md", "yaml")[0][1])
    return merge(job, BAD_YAML_PATCH)


def test_the_readme_s_validate_commands_print_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(_bad_yaml()))
    monkeypatch.chdir(tmp_path)
    runs = [(w, shown) for w, shown in _commands(ROOT / "README.md", "finetune") if w[1] == "validate"]
    assert len(runs) >= 2

    for words, shown in runs:
        result = CliRunner().invoke(app, _expand(words[1:], tmp_path))
        if shown:
            assert result.output.splitlines() == shown, words
        else:
            assert result.exit_code == 0, result.output


def _markdown_files() -> list[Path]:
    """Every .md file of the repository outside hidden folders (.git, .cache)."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder) / f for f in sorted(files) if f.endswith(".md")]
    return found


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda d: str(d.relative_to(ROOT)))
def test_every_link_resolves(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", _text(doc))):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path) if path else doc
        assert linked.exists(), f"{doc.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{doc.name} links to {target}: no such heading"
