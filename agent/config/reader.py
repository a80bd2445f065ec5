"""Loading: one YAML file (docs/design.md §4) turned into a validated Config, or every problem
of the file at once.

Each problem reads `FILE:LINE: KEY.PATH: problem (value) — hint`, because the person fixing it
may be on call at night with a gateway that refuses to start. Line numbers come from the YAML
node tree (`yaml.compose`), which is also where duplicate keys are caught: PyYAML's loader would
silently keep the last one. Unknown keys are errors because a typo ("trusted_key") must not
silently switch protection off.

Relative paths are resolved against the directory of the configuration file. Nothing here
touches the network: a feed server that is down must not keep the agent from starting with its
last good copy.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import fields
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.config.dns import read_dns
from agent.config.feeds import read_feeds
from agent.config.firewall import read_firewall
from agent.config.guards import read_guards
from agent.config.isolation import read_isolation
from agent.config.model import DEFAULT_CONFIG_PATH, Config
from agent.config.nodes import given, is_null
from agent.config.perms import STRICT_HINT, strict_problem
from agent.config.values import ValueReader
from agent.errors import ConfigError

_TOP_KEYS = tuple(f.name for f in fields(Config) if f.name != "path")


class ConfigProblems(ConfigError):
    """Everything wrong with one configuration file, reported in one go.

    Fixing a file one error per restart is miserable at 3 a.m.; so the loader keeps going after
    the first problem and lists them all. `problems` holds one line per problem, each
    `FILE:LINE: KEY.PATH: problem (value) — hint`, for the CLI's `--json` output and for tests.
    """

    def __init__(self, path: str, problems: list[str], *, what: str = "",
                 hint: str = "") -> None:
        if not what:
            noun = "problem" if len(problems) == 1 else "problems"
            what = f"{len(problems)} {noun} in the configuration file:\n  " + "\n  ".join(
                problems)
            hint = hint or ("fix every line listed; no part of this file is used until all of "
                            "them are fixed")
        super().__init__(what, where=path, hint=hint)
        self.problems = problems


def load(path: str | Path) -> Config:
    """Read and validate the configuration file at `path`; raise ConfigError if it is not usable.

    The text is decoded as UTF-8 (a leading byte-order mark from a Windows editor is accepted).
    """
    name = str(path)
    problem = strict_problem(name)
    if problem is not None:
        raise _single(name, f"refused: {problem}", STRICT_HINT)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise _single(
            name, "no such configuration file",
            f"give the right path with -c (the default is {DEFAULT_CONFIG_PATH}); start from "
            "the annotated example agent.yaml shipped with the package",
        ) from None
    except IsADirectoryError:
        raise _single(name, "this is a directory, not a configuration file",
                      "give the path of the YAML file itself with -c") from None
    except PermissionError:
        raise _single(name, "permission denied while reading the configuration file",
                      "run the command as root, or make the file readable by the agent") from None
    except UnicodeDecodeError as exc:
        raise _single(name, f"not UTF-8 text (byte {exc.start})",
                      "save the file as UTF-8; it may be a binary file or another encoding") \
            from None
    except OSError as exc:
        raise _single(name, f"cannot read the configuration file: {exc.strerror or exc}",
                      "check that the file exists and is readable") from None
    return loads(text, name)


def loads(text: str, path: str = "<string>") -> Config:
    """Validate configuration text; `path` names it in messages and anchors relative paths.

    Relative paths in the file (state_dir, key files, …) are resolved against the directory of
    `path`, so that a configuration and its key files can be moved together (and tests can use a
    temporary directory); with the default "<string>" they are resolved against the current
    directory.
    """
    pseudo = path.startswith("<")  # "<string>", "<stdin>": no file to be relative to
    base_dir = os.getcwd() if pseudo else os.path.dirname(os.path.abspath(path))
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        if not _TOP_LINE.search(text):
            raise _not_ours(path, "it is not valid YAML") from None
        raise ConfigProblems(path, [_yaml_problem(path, exc)]) from None
    except yaml.reader.ReaderError as exc:
        if not _TOP_LINE.search(text):
            raise _not_ours(path, "it is not YAML text") from None
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigProblems(path, [
            f"{path}:{line}: not valid YAML: character {exc.character!r} is not allowed — "
            "remove it (often a control character pasted from a terminal or a document)"
        ]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML parse error is one of above
        raise ConfigProblems(path, [f"{path}:1: not valid YAML: {exc}"]) from None
    _refuse_foreign(path, root)
    reader = ValueReader(path, base_dir)
    config = _config(reader, root)
    if reader.problems:
        raise ConfigProblems(path, reader.sorted_problems())
    return config


def _config(r: ValueReader, root: Node | None) -> Config:
    if root is None:  # an empty file, or only comments
        return Config(path=r.file)
    top = r.mapping(root, "", _TOP_KEYS, "a mapping of settings", extensions=True)
    if top is None:
        return Config(path=r.file)
    return given(Config, r.settings(top, "", {
        "state_dir": r.file_path,
        "local_dir": r.trusted_file,
        "metrics_file": lambda n, p: r.file_path(n, p, optional=True),
        "feeds": lambda n, _: read_feeds(r, n),
        "guards": lambda n, _: read_guards(r, n),
        "firewall": lambda n, _: read_firewall(r, n),
        "dns": lambda n, _: read_dns(r, n),
        "isolation": lambda n, _: read_isolation(r, n),
    }), path=r.file)


# a line that sets one of the agent's top-level keys: what makes a file plausibly ours
_TOP_LINE = re.compile("^({})[ \t]*:".format("|".join(_TOP_KEYS)), re.MULTILINE)


def _not_ours(path: str, why: str) -> ConfigProblems:
    """A file that is not an agent configuration is named, never quoted: `-c` may point at a
    key or a shadow-like file (through sudo, too), whose lines must not end up in a terminal."""
    hint = ("this is not a blocklist-agent configuration, so nothing of it is shown; give the "
            f"agent's YAML configuration with -c (the default is {DEFAULT_CONFIG_PATH})")
    return ConfigProblems(path, [f"{path}:1: {why} — {hint}"], what=why, hint=hint)


def _ours(key: object) -> bool:
    """A known top-level key, an extension, or a typo of a known key (reported with its fix)."""
    text = str(key)
    return text in _TOP_KEYS or text.startswith("x-") or bool(
        difflib.get_close_matches(text, _TOP_KEYS, n=1, cutoff=0.6))


def _refuse_foreign(path: str, root: Node | None) -> None:
    if root is None or is_null(root):
        return
    if isinstance(root, SequenceNode):
        raise _not_ours(path, "expected a mapping of settings, found a list")
    if not isinstance(root, MappingNode):
        raise _not_ours(path, "expected a mapping of settings, found a single value")
    keys = [k.value for k, _ in root.value if isinstance(k, ScalarNode)]
    if keys and not any(_ours(k) for k in keys):
        raise _not_ours(path, f"none of its {len(keys)} top-level keys is a setting of the agent")


def _single(path: str, problem: str, hint: str) -> ConfigProblems:
    """A problem with the file as a whole (it cannot be read): no line to point at."""
    return ConfigProblems(path, [f"{path}: {problem} — {hint}"], what=problem, hint=hint)


def _yaml_problem(path: str, exc: yaml.MarkedYAMLError) -> str:
    """One line for a YAML syntax error, with PyYAML's wording and our advice."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = exc.problem or exc.context or "syntax error"
    text = f"{path}:{line}: not valid YAML: {problem}"
    if exc.context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
        text += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
    if "'\\t'" in problem:
        hint = "YAML does not allow tabs for indentation; use spaces"
    elif "single document" in (exc.context or ""):
        hint = "the file must hold one YAML document: remove the '---' or '...' line"
    elif "alias" in problem:
        hint = "an alias (*name) needs an anchor (&name) defined above it"
    else:
        hint = ("check the indentation and the quoting on this line and the one above; quote "
                "values that contain ': ', ' #' or start with '*', '&', '!', '%', '@' or '`'")
    return f"{text} — {hint}"
