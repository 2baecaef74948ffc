"""Every `vigil ...` command the documentation shows is one the program
accepts, and every command the program has is documented (issue 19).

The commands come from README.md and docs/*.md: the lines of shell and
plain code blocks that run vigil (after a `$ ` or `# ` prompt, `sudo`,
`ssh HOST`, `VAR=value`; up to a pipe, a redirect, `&&`, `;`, a comment,
or a synopsis line's description after two spaces), and the inline code
spans that do. A synopsis is expanded: each `[optional part]` left out
and put in, each `a|b` alternative, the placeholders (HOST, FILE,
YYYY-MM-DD, <name>...) given plausible values, `...` dropped. Each
result is parsed by agent.cli.build_parser() in process, and each flag
it shows must be one of its command's own (argparse would take an
abbreviation). A span names a command and may leave out its required
arguments (`vigil hub token`), never its path or its flags.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import build_parser

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

SHELL_BLOCKS = {"", "sh", "bash", "shell", "console", "shell-session"}
FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")
FENCE_CLOSE = re.compile(r"^\s*(`{3,}|~{3,})\s*$")
SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)

SEPARATORS = ("&&", "||", "|", ";", "&")
REDIRECTS = (">>", ">", "<")
COMMAND_WORD = re.compile(r"-{1,2}[a-z][a-z-]*|[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*")
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_-]*")
PLACEHOLDERS = {
    "HOST": "web-01",
    "NEWID": "web-02",
    "ID": "web-01",
    "FILE": "/etc/vigil/agent.toml",
    "PATH": "/etc/vigil/agent.toml",
    "NAME": "web",
    "CHECK": "web",
    "RULE": "HighCPU",
    "YYYY-MM-DD": "2026-03-10",
    "DATE": "2026-03-10",
    "D": "2026-03-10",
    "DURATION": "5s",
}
REQUIRED_MISSING = "the following arguments are required"


@dataclass(frozen=True)
class Word:
    text: str
    quoted: bool = False


@dataclass(frozen=True)
class Group:
    """`[a | b c]`: an optional part and its alternatives."""

    alternatives: tuple[tuple[Token, ...], ...]


Token = Word | Group | str  # str: a shell operator


@dataclass(frozen=True)
class Command:
    line: int
    text: str  # as the document shows it
    variants: tuple[tuple[str, ...], ...]  # the argument lists after `vigil`
    mention: bool  # names a command: its required arguments may be left out


def _describes(rest: str) -> bool:
    """Whether what follows two spaces in a synopsis is its description."""
    if rest[0] in "[-<|.#>&;'\"$/":
        return False
    return not re.fullmatch(PLACEHOLDER.pattern + r"(\.\.\.)?", rest.split()[0])


def tokenize(text: str, synopsis: bool = False) -> list[Token]:
    """Shell-like words, operators and `[...]` groups. ` | ` is a pipe at
    the top and separates alternatives in a group; in `a|b` it separates
    a word's alternatives. A comment ends the line; in a synopsis so does
    a description, after two spaces."""
    groups: list[list[list[Token]]] = [[[]]]  # the open groups' alternatives
    buf: list[str] | None = None
    quoted = False

    def end_word() -> None:
        nonlocal buf, quoted
        if buf is not None:
            groups[-1][-1].append(Word("".join(buf), quoted))
        buf, quoted = None, False

    def close_group() -> None:
        end_word()
        alternatives = groups.pop()
        groups[-1][-1].append(Group(tuple(tuple(a) for a in alternatives)))

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            end_word()
            j = i
            while j < n and text[j].isspace():
                j += 1
            wide = j - i >= 2 and j < n and groups[0][0]
            if synopsis and len(groups) == 1 and wide and _describes(text[j:]):
                break
            i = j
        elif c == "#" and buf is None:
            break
        elif c in "'\"":
            end = text.find(c, i + 1)
            end = n if end < 0 else end
            buf = [*(buf or []), *text[i + 1 : end]]
            quoted = True
            i = end + 1
        elif c == "\\" and i + 1 < n:
            buf = [*(buf or []), text[i + 1]]
            i += 2
        elif c == "[" and buf is None:
            groups.append([[]])
            i += 1
        elif c == "]" and len(groups) > 1:
            close_group()
            i += 1
        elif c == "<" and buf is None and (m := re.match(r"<[^<>\s][^<>]*>", text[i:])):
            buf = list(m.group())  # a placeholder
            i += m.end()
        elif c == "|" and buf is not None and i + 1 < n and text[i + 1] not in " \t|":
            buf.append(c)  # md|json: one word's alternatives
            i += 1
        elif op := next((o for o in (*SEPARATORS, *REDIRECTS) if text.startswith(o, i)), None):
            i += len(op)
            if op == "|" and len(groups) > 1:
                end_word()
                groups[-1].append([])
                continue
            if op in REDIRECTS and buf is not None and "".join(buf).isdigit():
                buf = None  # 2>
            end_word()
            groups[-1][-1].append(op)
            if op in REDIRECTS and text.startswith("&", i):
                i += 1  # >&2
        else:
            buf = [*(buf or []), c]
            i += 1
    end_word()
    while len(groups) > 1:
        close_group()
    return groups[0][0]


def segments(tokens: list[Token]) -> Iterator[list[Token]]:
    """The simple commands of a line: no separators, no redirects."""
    segment: list[Token] = []
    redirected = False
    for token in tokens:
        if redirected:
            redirected = False
        elif token in SEPARATORS:
            yield segment
            segment = []
        elif token in REDIRECTS:
            redirected = True
        else:
            segment.append(token)
    yield segment


def _is(token: Token, pattern: str) -> bool:
    return isinstance(token, Word) and re.fullmatch(pattern, token.text) is not None


def invocation(segment: list[Token]) -> list[Token] | None:
    """What follows `vigil` if this command runs vigil, else None."""
    i = 0
    while i < len(segment) and isinstance(token := segment[i], Word):
        word = token.text
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
            i += 1
        elif word in ("sudo", "env", "exec", "time", "nohup", "command"):
            i += 1
            while i < len(segment) and _is(segment[i], r"-.*"):
                takes_value = word == "sudo" and _is(segment[i], r"-[ugCDhprtU]|--(user|group)")
                i += 2 if takes_value else 1
        elif word == "ssh":
            i += 1
            while i < len(segment) and _is(segment[i], r"-.*"):
                i += 2 if _is(segment[i], r"-[bcDEeFIiJLlmOopQRSWw]") else 1
            segment, i = segment[i + 1 :], 0  # after the host: the remote command
            remote = segment[0] if len(segment) == 1 else None
            if isinstance(remote, Word) and remote.quoted:
                found = (invocation(s) for s in segments(tokenize(remote.text)))
                return next((args for args in found if args is not None), None)
        else:
            break
    if i + 1 >= len(segment):
        return None
    program, first = segment[i], segment[i + 1]
    if not isinstance(program, Word) or program.quoted:
        return None
    if program.text != "vigil" and not program.text.endswith("/vigil"):
        return None
    if isinstance(first, Word) and (first.quoted or not COMMAND_WORD.fullmatch(first.text)):
        return None  # `vigil 0.1.0 started`
    return segment[i + 1 :]


def value(word: Word) -> str:
    """A plausible value for what the document shows."""
    text = word.text
    if "$" in text:
        return PLACEHOLDERS["HOST"]  # "$(hostname)", "$host"
    if word.quoted:
        return text
    if text.startswith("-") and "=" in text:
        flag, _, shown = text.partition("=")
        return f"{flag}={value(Word(shown))}"
    if m := re.fullmatch(r"<([^<>]+)>", text):
        names = [m.group(1).upper(), *re.findall(r"[A-Z][A-Z-]*", m.group(1).upper())]
        return next((PLACEHOLDERS[n] for n in names if n in PLACEHOLDERS), "x")
    if PLACEHOLDER.fullmatch(text):
        return PLACEHOLDERS.get(text, "x")
    return text


def expand(tokens: tuple[Token, ...] | list[Token]) -> list[tuple[str, ...]]:
    """Every argument list a synopsis stands for."""
    variants: list[tuple[str, ...]] = [()]
    for token in tokens:
        if isinstance(token, Group):
            options = [(), *(v for alternative in token.alternatives for v in expand(alternative))]
        elif isinstance(token, str) or token.text == "...":
            continue
        elif token.quoted:
            options = [(value(token),)]
        else:
            shown = token.text.removesuffix("...")
            options = [(value(Word(w)),) for w in shown.split("|")] if shown else [()]
        variants = [v + o for v in variants for o in options]
    return list(dict.fromkeys(variants))


def render(tokens: list[Token] | tuple[Token, ...]) -> str:
    """A command as the document shows it, less its description and comment."""
    shown = []
    for token in tokens:
        if isinstance(token, Group):
            shown.append(f"[{' | '.join(render(a) for a in token.alternatives)}]")
        elif isinstance(token, Word):
            quote = token.quoted and not re.fullmatch(r"[\w./:=@-]+", token.text)
            shown.append(f'"{token.text}"' if quote else token.text)
        else:
            shown.append(token)
    return " ".join(shown)


def _commands(text: str, line: int, *, synopsis: bool, mention: bool) -> list[Command]:
    text = re.sub(r"^[$#]\s+", "", text.strip())  # a prompt
    found = []
    for segment in segments(tokenize(text, synopsis)):
        args = invocation(segment)
        if args is not None:
            ends_open = args[-1] == Word("...")
            shown = render(["vigil", *args])
            found.append(Command(line, shown, tuple(expand(args)), mention or ends_open))
    return found


def extract(markdown: str) -> list[Command]:
    """The vigil commands a Markdown text shows, in order."""
    found: list[Command] = []
    prose: list[str] = []  # the text outside code blocks, line for line
    fence: tuple[str, str] | None = None
    continued: tuple[int, str] | None = None
    for number, line in enumerate(markdown.splitlines(), 1):
        if fence is None:
            if m := FENCE_OPEN.match(line):
                fence = (m.group(1), m.group(2).lower())
                line = ""
            prose.append(line)
            continue
        prose.append("")
        m = FENCE_CLOSE.match(line)
        if m and m.group(1)[0] == fence[0][0] and len(m.group(1)) >= len(fence[0]):
            fence = None
            continue
        if fence[1] not in SHELL_BLOCKS:
            continue
        start, text = continued if continued else (number, "")
        text += line.lstrip() if continued else line
        if text.endswith("\\"):
            continued = (start, text[:-1].rstrip() + " ")
            continue
        continued = None
        found += _commands(text, start, synopsis=True, mention=False)
    text = "\n".join(prose)
    for m in SPAN.finditer(text):
        span = m.group(2).replace("\\|", "|").strip()
        line = text.count("\n", 0, m.start()) + 1
        found += _commands(" ".join(span.split()), line, synopsis=False, mention=True)
    return sorted(found, key=lambda c: c.line)


@functools.cache
def documented() -> dict[Path, list[Command]]:
    return {path: extract(path.read_text()) for path in (README, *DOCS)}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _path(
    parser: argparse.ArgumentParser, args: tuple[str, ...]
) -> tuple[tuple[str, ...], list[argparse.ArgumentParser]]:
    """The subcommands that args name, and the parsers on the way."""
    path: tuple[str, ...] = ()
    parsers = [parser]
    for word in args:
        subcommands = _subcommands(parsers[-1])
        if not subcommands or word not in subcommands:
            break
        path += (word,)
        parsers.append(subcommands[word])
    return path, parsers


def all_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, subparser in _subcommands(parser).items():
        yield (*prefix, name)
        yield from all_commands(subparser, (*prefix, name))


def problem(parser: argparse.ArgumentParser, args: tuple[str, ...], mention: bool) -> str | None:
    """Why `vigil ARGS` is not a command the program takes, or None."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(list(args))
        except SystemExit as exc:
            error = (stderr.getvalue().strip().splitlines() or [f"exit {exc.code}"])[-1]
            if exc.code and not (mention and REQUIRED_MISSING in error):
                return error
    path, parsers = _path(parser, args)
    flags: set[str] = set().union(*(p._option_string_actions for p in parsers))
    for arg in args:
        flag = arg.partition("=")[0]
        if flag.startswith("-") and flag not in flags:
            return f"{flag} is not an option of {' '.join(('vigil', *path))}"
    return None


def _where(path: Path, command: Command) -> str:
    return f"{path.relative_to(ROOT)}:{command.line}"


def test_every_documented_command_is_one_the_program_takes():
    parser = build_parser()
    failures: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for path, commands in documented().items():
        for command in commands:
            for args in command.variants:
                if error := problem(parser, args, command.mention):
                    key = (args, f"`{command.text}` (as `vigil {' '.join(args)}`): {error}")
                    failures.setdefault(key, []).append(_where(path, command))
    assert not failures, "documented commands the program does not take:\n" + "\n".join(
        f"{', '.join(where)}: {what}" for (_, what), where in failures.items()
    )


def _documented_commands(paths: list[Path]) -> set[tuple[str, ...]]:
    parser = build_parser()
    found = set()
    for path in paths:
        for command in documented()[path]:
            for args in command.variants:
                named, _ = _path(parser, args)
                found.update(named[:n] for n in range(1, len(named) + 1))
    return found


def test_every_command_is_in_the_readme_and_the_docs():
    commands = set(all_commands(build_parser()))
    assert ("hub", "token") in commands
    for where, paths in (("README.md", [README]), ("docs/*.md", DOCS)):
        missing = sorted(commands - _documented_commands(paths))
        assert not missing, f"commands {where} does not show: " + ", ".join(
            " ".join(("vigil", *command)) for command in missing
        )


SAMPLE = """\
vigil is a monitoring agent; `vigil` is its command, `vigil: hint: use vigil hub run` a message.
Run `vigil hub revoke
HOST --undo`, or `sudo vigil status --json | jq .`; `vigil-monitoring[postgres]`.

| `vigil_up` | gauge | `vigil hub ...` |

```sh
$ vigil once --json > out.jsonl   # one record per line
FOO=1 vigil checks run NAME && systemctl restart vigil-agent
ssh -n web-01 'sudo -u root vigil check-config' | cat
ln -s /opt/vigil/bin/vigil /usr/bin/vigil    # the units run /usr/bin/vigil
.venv/bin/vigil alerts test \\
    <rule name>
```

```
vigil hub report daily [--date YYYY-MM-DD] [--format md|json]   the report: daily [or not]
vigil checks [list | run NAME]  run one
Mar 10 12:00:00 web-01 vigil[812]: started
vigil 0.1.0 started
buffertool.py     vigil buffer inspect
```

```toml
# vigil status
token_file = "/etc/vigil/token"
```
"""


def test_the_extraction_takes_the_commands_and_nothing_else():
    found = [(c.line, " ".join(args), c.mention) for c in extract(SAMPLE) for args in c.variants]
    assert found == [
        (2, "hub revoke web-01 --undo", True),
        (3, "status --json", True),
        (5, "hub", True),
        (8, "once --json", False),
        (9, "checks run web", False),
        (10, "check-config", False),
        (12, "alerts test HighCPU", False),
        (17, "hub report daily", False),
        (17, "hub report daily --format md", False),
        (17, "hub report daily --format json", False),
        (17, "hub report daily --date 2026-03-10", False),
        (17, "hub report daily --date 2026-03-10 --format md", False),
        (17, "hub report daily --date 2026-03-10 --format json", False),
        (18, "checks", False),
        (18, "checks list", False),
        (18, "checks run web", False),
    ]
    parser = build_parser()
    assert problem(parser, ("hub", "token"), mention=True) is None
    assert problem(parser, ("hub", "token"), mention=False)
    assert problem(parser, ("hub", "tokens", "web-01"), mention=True)
    assert problem(parser, ("hub", "hosts", "--js"), mention=False)  # argparse would take it


def _vigil() -> list[str]:
    script = Path(sys.executable).with_name("vigil")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())"]


@pytest.mark.parametrize("command", [" ".join(c) for c in all_commands(build_parser())])
def test_help_of_every_command(command):
    words = command.split()
    done = subprocess.run(
        [*_vigil(), *words, "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 0, f"vigil {command} --help: exit {done.returncode}\n{done.stderr}"
    assert done.stdout.startswith(f"usage: vigil {command} "), done.stdout


def test_the_readme_names_every_package_make_test_installs():
    """README's `make test` paragraph lists what is really installed: each
    package the Makefile's test-deps and deb-deps install (issue 19)."""
    makefile = (ROOT / "Makefile").read_text()

    def target(name: str) -> str:  # its recipe: up to the first blank line
        return makefile.split(f"\n{name}:", 1)[1].split("\n\n", 1)[0]

    packages = set(re.findall(r'missing="\$\$missing ([a-z0-9.+-]+)"', target("test-deps")))
    packages |= set(re.search(r"for p in ([a-z0-9 .+-]+); do", target("deb-deps")).group(1).split())
    assert len(packages) >= 14
    readme = (ROOT / "README.md").read_text()
    assert sorted(p for p in packages if f"`{p}`" not in readme) == []
