"""`params.yaml`: reading it, turning a schema's complaints into one line per bad key, and building
a `Params` dataclass (a model's, the training settings) from checked values (`typed`).

The schema itself is components/schema.py (each model declares its own parameters' types and
ranges in its `Params`). Every mapping of params.yaml is a `Section`: a strict pydantic model, so
`"fast"` is no number, `1` no boolean, and an unknown key an error rather than a silent default.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from components.errors import ConfigError, repo_path


def load_params(path: Path | str | None = None) -> dict:
    """params.yaml as written (unchecked: see components.schema.checked_params). A YAML syntax
    error names the file, line and column."""
    path = Path(path or repo_path("params.yaml"))
    name = display_name(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{name}: cannot read it: {error.strerror or error}") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark, started = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)   # e.g. "while parsing a flow sequence", and where it began
        if context and started:
            context += f" that starts at line {started.line + 1}, column {started.column + 1}"
        raise ConfigError(f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "")) from None
    if not isinstance(params, dict):
        raise ConfigError(f"{name}: expected a mapping of sections (data, train, models, ...) at the top level, "
                          f"got {value_text(params)}")
    return params


def display_name(path: Path) -> str:
    """The params file as a message names it: relative to the working directory where it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- the schema's building blocks ---------------------------------------------------------------

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0)]           # numpy's generators take no negative seed


class Section(BaseModel):
    """A mapping of params.yaml: strict types, no unknown keys. Fields left out keep the code's default."""
    model_config = ConfigDict(extra="forbid", strict=True)


def checked(values, hint, where: tuple = ()) -> list[tuple[tuple, object, str]]:
    """(key path, value given, what is valid) for every value of `values` that `hint` (a `Section`,
    a model's `Params` dataclass, or any annotation) rejects; empty when valid."""
    try:
        adapter(hint).validate_python(values)
    except ValidationError as error:
        found = {}
        for item in error.errors():   # a union's branches each complain: one line per value
            path, value, expected = complaint(hint, where, values, item)
            found.setdefault(path, (path, value, expected))
        return list(found.values())
    return []


_ADAPTERS: dict = {}


def adapter(hint) -> TypeAdapter:
    key = repr(hint) if not isinstance(hint, type) else hint
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(strict_model(hint) if dataclasses.is_dataclass(hint) else hint)
    return _ADAPTERS[key]


@functools.cache
def strict_model(params_class: type) -> type[Section]:
    """A `Params` dataclass (a model's, the training settings') as a `Section`: its annotations,
    ranges included, with any dataclass among them a `Section` too, and its cross-field rules (what
    its `__post_init__` raises as ValueError) run once the fields are valid. The dataclass itself
    stays plain, as saved models and the trainer use it; `typed` builds it from checked values."""
    from pydantic import create_model

    hints = typing.get_type_hints(params_class, include_extras=True)
    fields = {f.name: (sectioned(hints[f.name]), ... if required(f) else None)
              for f in dataclasses.fields(params_class)}
    model = create_model(params_class.__qualname__.replace(".", "_"), __base__=Section,
                         __validators__={"rules": rules(params_class)}, **fields)
    DATACLASSES[model] = params_class
    return model


def required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


DATACLASSES: dict[type[Section], type] = {}   # strict_model's Section -> the dataclass it stands for


def sectioned(hint):
    """`hint` with every dataclass in it replaced by its `Section` (strict pydantic takes a mapping for a
    model, but only an instance for a dataclass)."""
    if dataclasses.is_dataclass(hint):
        return strict_model(hint)
    if typing.get_origin(hint) is Annotated:
        return Annotated[(sectioned(hint.__origin__), *hint.__metadata__)]
    args = typing.get_args(hint)
    if not args or typing.get_origin(hint) is Literal:
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.Union[tuple(sectioned(a) for a in args)]
    return typing.get_origin(hint)[tuple(sectioned(a) for a in args)]


def rules(params_class: type, names: tuple[str, ...] | None = None):
    """A validator running `params_class`'s cross-field rules on a Section's fields `names` (None: all)."""
    from pydantic import model_validator
    from pydantic_core import PydanticCustomError

    def check(section):
        try:
            built(section, params_class, names)
        except ValueError as error:
            raise PydanticCustomError("params_rule", str(error)) from None
        return section

    return model_validator(mode="after")(check)


def built(section: BaseModel, params_class: type, names: tuple[str, ...] | None = None):
    """The dataclass `params_class` of a checked Section's fields (given fields only: the rest keep
    the dataclass's defaults), nested Sections built into their dataclasses too."""
    given = [name for name in section.model_fields_set if names is None or name in names]
    return params_class(**{name: plain(getattr(section, name)) for name in given})


def plain(value):
    if isinstance(value, BaseModel) and type(value) in DATACLASSES:
        return built(value, DATACLASSES[type(value)])
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def typed(params_class: type, values: dict, where: str):
    """`params_class` (a `Params` dataclass) built from `values`, after the schema's check of them: a
    ConfigError with one line per bad key (`where`: what the lines name first) otherwise. The one check
    of a model's parameters or the training settings, for params.yaml and a dict in code alike."""
    try:
        section = adapter(params_class).validate_python(values)
    except ValidationError:
        raise ConfigError("\n".join(line(where, *problem) for problem in checked(values, params_class))) from None
    return built(section, params_class)


def complaint(hint, where: tuple, values, error: dict) -> tuple[tuple, object, str]:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    kind = error["type"]
    if kind == "params_rule":   # a cross-field rule (strict_model): its own words
        return where + loc, KEY, error["msg"]
    if kind == "extra_forbidden":
        parent = hint_at(hint, loc[:-1])
        valid = ", ".join(field_names(parent)) if parent is not None else "none"
        return where + loc, KEY, f"unknown key; valid keys: {valid or 'none'}"
    if kind == "missing":
        return where + loc, MISSING, f"required: {describe(hint_at(hint, loc))}"
    if error["loc"][-1:] == ("[key]",):
        key_hint = typing.get_args(unwrap(optional(hint_at(hint, loc[:-1]))[0])[0])[0]
        return where + loc, KEY, f"unknown key; valid keys: {', '.join(map(str, choices(key_hint)))}"
    while loc and hint_at(hint, loc) is None and is_union(hint_at(hint, loc[:-1])):
        loc = loc[:-1]   # pydantic names the union's branch (e.g. 'constrained-int'): the value is its parent
    found = hint_at(hint, loc)
    return where + loc, error["input"], f"must be {describe(found)}" if found is not None else error["msg"]


MISSING, KEY = object(), object()


def line(file: str, path: tuple, value, expected: str) -> str:
    """`params.yaml: train.batch_size = 0: must be an integer >= 1`."""
    shown = "" if value is MISSING or value is KEY else f" = {value_text(value)}"
    if not path and value is KEY:   # a rule of the whole mapping (strict_model's `rules`)
        return f"{file}: {expected}"
    return f"{file}: {path_text(path)}{shown}: {expected}"


def path_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def value_text(value) -> str:
    """A value as YAML spells it (null, true, 'text', [1, 2])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


# --- reading annotations: what is valid where ----------------------------------------------------

def unwrap(hint) -> tuple[object, list]:
    """(the bare type, its constraints) of an annotation: Annotated and FieldInfo peeled off."""
    constraints = []
    while typing.get_origin(hint) is Annotated:
        for extra in hint.__metadata__:
            constraints += extra.metadata if isinstance(extra, FieldInfo) else [extra]
        hint = hint.__origin__
    return hint, constraints


def optional(hint) -> tuple[object, bool]:
    """(the annotation without None, whether None is allowed)."""
    bare, _ = unwrap(hint)
    if typing.get_origin(bare) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(bare) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(bare)) == 2:
            return args[0], True
    return hint, False


def is_union(hint) -> bool:
    """Whether `hint` takes one of several types (other than just a type or None)."""
    bare = unwrap(optional(hint)[0])[0] if hint is not None else None
    return typing.get_origin(bare) in (typing.Union, types.UnionType)


def section_class(hint) -> type | None:
    bare = unwrap(optional(hint)[0])[0]
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        return bare
    if dataclasses.is_dataclass(bare):
        return strict_model(bare)
    return None


def field_names(hint) -> list[str]:
    model = section_class(hint)
    return list(model.model_fields) if model else []


def field_hint(model: type[BaseModel], name: str):
    info = model.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def hint_at(hint, loc: tuple):
    """The annotation of the value at `loc` below `hint`, or None where the path leaves the schema."""
    for part in loc:
        hint = optional(hint)[0]
        model = section_class(hint)
        bare = unwrap(hint)[0]
        if model is not None:
            if part not in model.model_fields:
                return None
            hint = field_hint(model, part)
        elif typing.get_origin(bare) is dict:
            hint = typing.get_args(bare)[1]
        elif typing.get_origin(bare) in (list, tuple):
            hint = typing.get_args(bare)[0]
        else:
            return None
    return hint


def choices(hint) -> tuple:
    return typing.get_args(unwrap(hint)[0])


BOUNDS = {annotated_types.Ge: (">=", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("<=", "le"),
          annotated_types.Lt: ("<", "lt")}


def describe(hint) -> str:
    """What an annotation accepts, in words: 'an integer >= 1', 'one of static, dynamic, none'."""
    inner, nullable = optional(hint)
    text = _describe(inner)
    return f"{text} (or null)" if nullable else text


def _describe(hint) -> str:
    bare, constraints = unwrap(hint)
    limits = [(BOUNDS[type(c)][0], getattr(c, BOUNDS[type(c)][1])) for c in constraints if type(c) in BOUNDS]
    minimum = [getattr(c, "min_length") for c in constraints if isinstance(c, annotated_types.MinLen)]
    maximum = [getattr(c, "max_length") for c in constraints if isinstance(c, annotated_types.MaxLen)]
    origin = typing.get_origin(bare)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(bare))
    if bare in (list, dict):
        return {list: "a list", dict: "a mapping"}[bare]
    if origin is Literal:
        return "one of " + ", ".join(value_text(c) if c == "" else value_text(c).strip("'")
                                     for c in typing.get_args(bare))
    if origin in (list, tuple):
        item = _describe(typing.get_args(bare)[0])
        size = ""
        if minimum and maximum and minimum == maximum:
            size = f" of {minimum[0]}"
        elif minimum:
            size = f" of at least {minimum[0]}"
        return f"a list{size} (each {item.removeprefix('an ').removeprefix('a ')})"
    if origin is dict:
        key, value = typing.get_args(bare)
        keys = ", ".join(map(str, choices(key))) if typing.get_origin(unwrap(key)[0]) is Literal else "name"
        return f"a mapping of {keys} to {_describe(value).removeprefix('an ').removeprefix('a ')}"
    model = section_class(bare)
    if model is not None:
        return f"a mapping with keys {', '.join(model.model_fields)}"
    name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(bare, str(bare))
    if len(limits) == 2 and {limits[0][0][0], limits[1][0][0]} == {">", "<"}:
        (low_op, low), (high_op, high) = sorted(limits, key=lambda x: x[0][0] == "<")
        left, right = "[" if low_op == ">=" else "(", "]" if high_op == "<=" else ")"
        return f"{name} in {left}{low}, {high}{right}"
    return " ".join([name] + [f"{op} {value}" for op, value in limits])
