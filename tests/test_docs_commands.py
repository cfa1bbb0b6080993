"""Every command the docs show runs as written (issue 20, item 5): each line of a fenced ```bash
block in README.md and docs/*.md that calls a launcher parses with that launcher's own argument
parser, names an existing search space and well-formed ``--set`` overrides (nothing runs). README.md
stays a five-minute read, and every relative link in the docs lands on a file."""

import argparse
import contextlib
import functools
import importlib.util
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import pytest

from ray_lth.cli import parse_overrides
from ray_lth.spaces import space_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAUNCHERS = ("sweep", "report", "imp", "export_ticket")
README_MAX_LINES = 150
SHELL_SEPARATORS = {"&&", "||", ";", "|"}
LAUNCHER_SCRIPT = re.compile(r"launchers/(\w+)\.py")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


class DocCommandError(ValueError):
    """A documented launcher command that its launcher would refuse."""


@dataclass(frozen=True)
class DocCommand:
    where: str  # "docs/sweep.md:12": the line the command starts on
    launcher: str  # "sweep" for launchers/sweep.py
    args: List[str]


def bash_lines(text: str) -> Iterator[tuple]:
    """(line number, logical line) of every fenced ```bash block, continuation lines joined."""
    in_bash, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_bash = not in_bash and line.strip()[3:].strip() == "bash"
            continue
        if not in_bash:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):  # a command continued on the next line
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def launcher_commands(text: str, name: str) -> Iterator[DocCommand]:
    """The launcher calls (``python launchers/X.py ...``, ``.venv/bin/python launchers/X.py ...``)
    of a markdown text's bash blocks; a line may chain several commands with && or ;."""
    for number, line in bash_lines(text):
        tokens = shlex.split(line, comments=True)
        commands, current = [], []
        for token in tokens:
            if token in SHELL_SEPARATORS:
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
        for command in commands:
            for index, token in enumerate(command[:-1]):
                script = LAUNCHER_SCRIPT.fullmatch(command[index + 1])
                if re.fullmatch(r"(?:\S*/)?python3?", token) and script:
                    yield DocCommand(f"{name}:{number}", script.group(1), command[index + 2:])


@functools.lru_cache(maxsize=None)
def launcher_module(name: str):
    spec = importlib.util.spec_from_file_location(f"documented_launcher_{name}", ROOT / "launchers" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_command(command: DocCommand) -> argparse.Namespace:
    """Parse as the launcher would (argparse exits on a bad flag: turned into DocCommandError),
    then the checks the launcher makes before any work: the space exists, ``--set`` parses."""
    if command.launcher not in LAUNCHERS:
        raise DocCommandError(f"{command.where}: launchers/{command.launcher}.py is not a launcher")
    parser = launcher_module(command.launcher).build_parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parsed = parser.parse_args(command.args)
    except SystemExit as error:
        message = errors.getvalue().strip().splitlines()[-1] if errors.getvalue().strip() else f"exit {error}"
        raise DocCommandError(f"{command.where}: launchers/{command.launcher}.py {shlex.join(command.args)}: "
                              f"{message}") from None
    # argparse takes an unambiguous prefix (--verb for --verbose); the docs spell every flag out
    abbreviated = [token.split("=")[0] for token in command.args
                   if token.startswith("--") and token.split("=")[0] not in option_strings(parser)]
    if abbreviated:
        raise DocCommandError(f"{command.where}: launchers/{command.launcher}.py has no flag {abbreviated[0]}")
    space = getattr(parsed, "space", None)
    if space is not None and space not in space_names():
        raise DocCommandError(f"{command.where}: no search space {space!r}; there are {space_names()}")
    try:
        parse_overrides(getattr(parsed, "set", []))
    except ValueError as error:
        raise DocCommandError(f"{command.where}: {error}") from None
    return parsed


def option_strings(parser: argparse.ArgumentParser) -> set:
    """Every flag of a parser and of its sub-commands (export_ticket's export and import)."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= option_strings(subparser)
    return found


def documented_commands() -> List[DocCommand]:
    return [command for path in DOCS for command in launcher_commands(path.read_text(), str(path.relative_to(ROOT)))]


COMMANDS = documented_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_every_documented_launcher_command_parses(command):
    check_command(command)


def test_the_docs_show_every_launcher():
    # an extractor that found nothing would pass every command it found
    assert {command.launcher for command in COMMANDS} == set(LAUNCHERS)


def test_a_flag_that_does_not_exist_is_refused():
    text = "```bash\npython launchers/sweep.py --space quick \\\n    --no-such-flag 3\n```\n"
    (command,) = launcher_commands(text, "example.md")
    assert command == DocCommand("example.md:2", "sweep", ["--space", "quick", "--no-such-flag", "3"])
    with pytest.raises(DocCommandError, match="example.md:2.*unrecognized arguments: --no-such-flag"):
        check_command(command)
    abbreviated = DocCommand("example.md:1", "export_ticket", ["import", "tickets/r5", "--spars"])
    with pytest.raises(DocCommandError, match="has no flag --spars"):
        check_command(abbreviated)  # argparse itself would take it for --sparse


def test_a_missing_space_or_a_malformed_set_is_refused():
    text = ("```bash\n.venv/bin/python -m pip list && .venv/bin/python launchers/sweep.py --space nowhere\n"
            "python launchers/imp.py --set rounds   # a comment\n```\n```\npython launchers/imp.py --bogus\n```\n")
    missing_space, malformed_set = launcher_commands(text, "example.md")  # the plain ``` block is not bash
    with pytest.raises(DocCommandError, match="no search space 'nowhere'"):
        check_command(missing_space)
    with pytest.raises(DocCommandError, match="--set expects key=value"):
        check_command(malformed_set)


def test_the_readme_stays_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material to docs/"


def test_the_readme_shows_the_command_ci_runs():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in (ROOT / "README.md").read_text().splitlines()


def test_every_relative_link_lands_on_a_file():
    broken = []
    for path in DOCS:
        for target in MARKDOWN_LINK.findall(path.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken


def test_the_readme_links_every_page_of_docs():
    targets = MARKDOWN_LINK.findall((ROOT / "README.md").read_text())
    linked = {(ROOT / target.split("#")[0]).resolve() for target in targets}
    assert set(DOCS[1:]) <= linked
