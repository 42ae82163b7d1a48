"""Load a YAML spec safely, remembering where every key and item stands.

Only `yaml.SafeLoader` is used: python tags are rejected. Duplicate keys, which
PyYAML would silently overwrite, are errors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shearc.errors import Problem, UserError

PathKey = tuple[str | int, ...]


@dataclass
class LoadedYaml:
    data: Any
    file: str
    text: str
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)  # path -> (line, column), 1-based

    def locate(self, path: PathKey) -> tuple[int | None, int | None]:
        """Position of the deepest part of `path` present in the file."""
        for cut in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:cut]))
            if mark is not None:
                return mark
        return None, None

    def problem(self, path: PathKey, message: str) -> Problem:
        line, column = self.locate(path)
        return Problem(message, dotted(path), self.file, line, column)


def dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Stop(Exception):
    """The walk over a document's nodes cannot go on (a cycle, or nesting past MAX_DEPTH)."""


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


MAX_DEPTH = 64  # far deeper than any spec; a bound before Python's own recursion limit


def _record(node: yaml.Node, path: PathKey, marks: dict, problems: list[Problem], file: str,
            open_nodes: frozenset[int] = frozenset()) -> None:
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in open_nodes or len(path) > MAX_DEPTH:  # an alias inside itself (&x [*x]), or absurd nesting
            line, column = _mark(node)
            what = "refers to itself through an alias" if id(node) in open_nodes else \
                f"is nested more than {MAX_DEPTH} levels deep"
            problems.append(Problem(f"this value {what}", dotted(path), file, line, column))
            raise _Stop
        open_nodes = open_nodes | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key in seen:
                line, column = _mark(key_node)
                problems.append(Problem(f"duplicate key {key!r}", dotted((*path, key)), file, line, column))
            seen.add(key)
            marks[(*path, key)] = _mark(key_node)
            _record(value_node, (*path, key), marks, problems, file, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            marks[(*path, index)] = _mark(item)
            _record(item, (*path, index), marks, problems, file, open_nodes)


def load_yaml(path: str | Path, *, display_name: str | None = None) -> LoadedYaml:
    """Parse `path`; any YAML problem becomes a located UserError."""
    file = display_name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError([Problem("file not found", file=file)], title="cannot read spec") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError([Problem(f"cannot read: {exc}", file=file)], title="cannot read spec") from None
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> LoadedYaml:
    try:
        loader = yaml.SafeLoader(text)  # reads the text at once: control characters are refused here
    except yaml.YAMLError as exc:
        raise UserError([Problem(f"YAML error: {exc}", file=file)], title="invalid spec") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise UserError([Problem("the document is empty; expected a mapping of sections", file=file)],
                            title="invalid spec")
        marks: dict[PathKey, tuple[int, int]] = {(): _mark(node)}
        problems: list[Problem] = []
        with contextlib.suppress(_Stop):  # the document cannot be walked further: what was found is reported
            _record(node, (), marks, problems, file)
        if problems:
            raise UserError(problems, title="invalid spec")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        if isinstance(exc, yaml.constructor.ConstructorError):
            message += " (shearc reads YAML with safe_load: tags such as !!python/... are not allowed)"
        raise UserError([Problem(f"YAML error: {message}", file=file, line=line, column=column)],
                        title="invalid spec") from None
    except yaml.YAMLError as exc:
        raise UserError([Problem(f"YAML error: {exc}", file=file)], title="invalid spec") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise UserError([Problem(f"expected a mapping of sections at the top level, got {kind}",
                                 file=file, line=1, column=1)], title="invalid spec")
    return LoadedYaml(data=data, file=file, text=text, marks=marks)
