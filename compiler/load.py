"""Read a spec file into a validated `Spec`, or a UserError listing every problem.

Each pydantic error is placed at the file's line and column, named by its field
path (without pydantic's union tags), with a did-you-mean for unknown keys and
method names.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from shearc.errors import Problem, UserError
from shearc.sections import RuleError

from .spec import Spec
from .yaml_source import LoadedYaml, PathKey, load_yaml, parse_yaml


def load_spec(path: str | Path) -> tuple[Spec, LoadedYaml]:
    return validate_loaded(load_yaml(path))


def load_spec_text(text: str, file: str = "<spec>") -> tuple[Spec, LoadedYaml]:
    return validate_loaded(parse_yaml(text, file))


def validate_loaded(loaded: LoadedYaml) -> tuple[Spec, LoadedYaml]:
    try:
        spec = Spec.model_validate(loaded.data)
    except ValidationError as exc:
        raise UserError(_problems(exc, loaded), title=f"invalid spec {loaded.file}") from None
    return spec, loaded


def _problems(exc: ValidationError, loaded: LoadedYaml) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        inner = (error.get("ctx") or {}).get("error")
        yaml_path, _ = _walk(tuple(error["loc"]))
        if isinstance(inner, RuleError):
            problems.extend(loaded.problem((*yaml_path, *path), message) for path, message in inner.problems)
            continue
        if error["type"].startswith("union_tag"):
            yaml_path = (*yaml_path, "method")
        problems.append(loaded.problem(yaml_path, _message(error, yaml_path)))
    return sorted(set(problems), key=lambda p: (p.line or 0, p.column or 0, p.path, p.message))


def _message(error: dict[str, Any], yaml_path: PathKey) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        key = str(yaml_path[-1])
        _, section = _walk(tuple(error["loc"][:-1]))
        allowed = list(section.model_fields) if section is not None else []
        hint = _did_you_mean(key, allowed)
        return f"unknown key {key!r}{hint}" + (f"; allowed: {', '.join(allowed)}" if allowed and not hint else "")
    if kind == "union_tag_invalid":
        tag = str(error["ctx"]["tag"])
        expected = [t.strip(" '") for t in str(error["ctx"]["expected_tags"]).split(",")]
        return f"unknown method {tag!r}{_did_you_mean(tag, expected)}; expected one of: {', '.join(expected)}"
    if kind == "union_tag_not_found":
        return "missing `method`, which names the method"
    if kind == "missing":
        return "too few items" if yaml_path and isinstance(yaml_path[-1], int) else "required field is missing"
    if "input" in error and kind not in ("model_type", "dict_type", "list_type"):
        shown = repr(error["input"])
        message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return message


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- walking the Spec's types along a pydantic error location ---------------------------------


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, dict[str, type[BaseModel]] | None, bool]:
    """(model, tagged union members, is_list) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (list, tuple):
        model, union, _ = _model_in(typing.get_args(annotation)[0])
        return model, union, True
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = {}
        for member in members:
            model, _, _ = _model_in(member)
            if model is not None and "method" in model.model_fields:
                tag = typing.get_args(model.model_fields["method"].annotation)[0]
                models[tag] = model
        if len(members) == 1:
            return _model_in(members[0])
        return None, models or None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, None, False
    return None, None, False


def _walk(loc: tuple[Any, ...]) -> tuple[PathKey, type[BaseModel] | None]:
    """Follow a pydantic error location through the Spec's types.

    Returns the path as the user wrote it (pydantic's union-tag steps dropped) and the
    section model reached, with the method the file chose for a union.
    """
    model: type[BaseModel] | None = Spec
    out: list[str | int] = []
    union: dict[str, type[BaseModel]] | None = None
    is_list = False
    for step in loc:
        if is_list and isinstance(step, int):
            out.append(step)
            is_list = False
            continue
        if union is not None and step in union:
            model, union = union[step], None
            continue
        out.append(step)
        field = model.model_fields.get(step) if (model is not None and isinstance(step, str)) else None
        if field is None:
            model, union, is_list = None, None, False
            continue
        model, union, is_list = _model_in(field.annotation)
    return tuple(out), model
