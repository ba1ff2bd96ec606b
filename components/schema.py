"""The schema of params.yaml: every section, every model entry, every sweep space.

Each section is a `Section` (components/config.py) built on first use, reading its choices from
the code that owns them (sources from the source registry, transforms from domains.py, schedule
kinds from schedules.py, models from the model registry); a model's parameters, with their ranges,
are its own `Params` (components/models/<name>.py). A stage checks the sections it reads before it
starts anything (`checked_params`), `python -m pipelines.check` checks them all, and every problem
is one line naming the key: `params.yaml: train.batch_size = 0: must be an integer >= 1`.
"""

from __future__ import annotations

import sys
import typing
from functools import cache
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, create_model
from pydantic_core import PydanticCustomError

from components.config import (KEY, MISSING, PositiveFloat, PositiveInt, Section, Seed, checked, describe,
                               display_name, field_hint, hint_at, line, load_params, optional, rules,
                               section_class, unwrap, value_text)
from components.errors import ConfigError, repo_path

Fraction = Annotated[float, Field(gt=0, lt=1)]


def distinct_names(domains: list) -> list:
    """Domains each named once: models, batches and reports tell them apart by name."""
    names = [domain.name for domain in domains]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PydanticCustomError("params_rule", ", ".join(f"domain {name!r} is named twice" for name in twice))
    return domains


@cache
def data_schema() -> type[Section]:
    from components.data.binarization import BINARIZATIONS
    from components.data.domains import TRANSFORMS
    from components.data.ood import NATURAL_IMAGE_PATCHES
    from components.data.prepared import SPLITS
    from components.data.sources import available_sources

    Source = Literal[tuple(available_sources())]
    Side = Annotated[int, Field(ge=2)]
    Patches = Annotated[int, Field(ge=3)]    # photo_patches: one at least for each of train, valid, test

    class Domain(Section):
        name: str
        source: Source
        transform: Literal[tuple(TRANSFORMS)] = "identity"
        path: str | None = None
        image_size: Side | None = None
        count: Patches | None = None

    class OutOfDistribution(Section):
        source: Literal[(NATURAL_IMAGE_PATCHES, *available_sources())] = NATURAL_IMAGE_PATCHES
        path: str | None = None
        count: PositiveInt = 500

    class Data(Section):
        source: Source | None = None         # required unless `domains` is set (see data_problems)
        path: str | None = None
        mirrors: list[str] | None = None
        image_size: Side | None = None
        count: Patches | None = None
        domains: Annotated[list[Domain], Field(min_length=1), AfterValidator(distinct_names)] | None = None
        captions: bool = False
        binarize: Literal[BINARIZATIONS] = "none"
        threshold: Annotated[float, Field(ge=0, lt=1)] = 0.5
        valid_fraction: Fraction = 0.1
        test_fraction: Fraction = 0.15
        seed: Seed = 0
        max_examples: dict[Literal[SPLITS], PositiveInt] | None = None
        holdout_class: Annotated[int, Field(ge=0)] | None = None
        ood: OutOfDistribution | None = None

    return Data


def data_problems(data) -> list[tuple]:
    if isinstance(data, dict) and data.get("domains") is None and data.get("source") is None:
        return [(("data", "source"), data.get("source", MISSING),
                 f"required unless data.domains is set: {describe(field_hint(data_schema(), 'source'))}")]
    return []


@cache
def train_schema() -> type[Section]:
    """`train`: the training settings as the trainer declares them (components/training/fit.py)."""
    from components.training import Settings

    return section_class(Settings)


@cache
def training_schema() -> type[Section]:
    """A model entry's `training`: any `train` setting, for that model."""
    train = train_schema()
    return create_model("Training", __base__=Section,
                        **{name: (field_hint(train, name), None) for name in train.model_fields})


class Cluster(Section):
    address: str | None = None


class Classifier(Section):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    seed: Seed


class Evaluate(Section):
    num_samples: Annotated[int, Field(ge=2)]    # sample-quality statistics need two samples
    iwae_samples: PositiveInt
    seed: Seed


PROMOTE_MODES = ("auto", "propose")


class Promote(Section):
    mode: Literal[PROMOTE_MODES] = "auto"
    respect_manual: bool = True


# --- sweeps ---------------------------------------------------------------------------------------

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
SEARCHABLE_SETTINGS = ("lr", "batch_size", "patience", "seed")
Bounds = Annotated[list[float], Field(min_length=2, max_length=2)]


class Distribution(Section):
    choice: Annotated[list, Field(min_length=1)] | None = None
    uniform: Bounds | None = None
    loguniform: Bounds | None = None
    randint: Bounds | None = None


class Sweep(Section):
    trials: PositiveInt = 4          # one trial is allowed: a user may mean it
    concurrent: PositiveInt | None = None
    grace_epochs: PositiveInt = 1
    space: dict[str, Distribution]


SPEC_KEYS = tuple(Sweep.model_fields)


def sweep_problems(where: tuple, sweep, entry_schema: type[Section]) -> list[tuple]:
    """A sweep space's names and values against what they search: the model's parameters (their
    types and ranges) and the searchable training settings."""
    if not isinstance(sweep, dict) or not isinstance(sweep.get("space"), dict):
        return []
    found = []
    params = {name: field_hint(entry_schema, name) for name in entry_schema.model_fields if name not in ENTRY}
    settings = {f"training.{name}": field_hint(train_schema(), name) for name in SEARCHABLE_SETTINGS}
    searchable = {**params, **settings}
    if not sweep["space"]:
        found.append((where + ("space",), sweep["space"], "names nothing to search; searchable: "
                      + ", ".join(searchable)))
    for name, spec in sweep["space"].items():
        at = where + ("space", name)
        if name not in searchable:
            found.append((at, KEY, f"nothing to search; searchable: {', '.join(searchable)}"))
            continue
        if not isinstance(spec, dict) or len(spec) != 1:
            if isinstance(spec, dict):
                found.append((at, spec, "must name one distribution: {choice: [...]}, {uniform: [low, high]}, "
                                        "{loguniform: [low, high]} or {randint: [low, high]}"))
            continue
        (kind, values), = spec.items()
        if kind not in DISTRIBUTIONS or not isinstance(values, list):
            continue  # the Distribution section says so
        target = searchable[name]
        if kind == "choice":
            found += [(at + (kind, i), value, f"must be {describe(target)} ({name})")
                      for i, value in enumerate(values) if checked(value, target)]
            continue
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        bare = unwrap(target)[0]
        if kind in ("uniform", "loguniform") and bare is int:
            found.append((at + (kind,), values, f"{name} is an integer: search it with randint or choice"))
            continue
        if values[0] >= values[1]:
            found.append((at + (kind,), values, "must be [low, high] with low < high"))
            continue
        if kind == "loguniform" and values[0] <= 0:
            found.append((at + (kind,), values, "must be [low, high] with 0 < low < high"))
            continue
        ends = (values[0], values[1] - 1) if kind == "randint" else tuple(values)
        for end, value in zip(("low", "high"), ends):
            value = int(value) if kind == "randint" else float(value)
            if bare is not int and bare is not float:
                found.append((at + (kind,), values, f"{name} is {describe(target)}: search it with choice"))
                break
            if checked(value, target):
                found.append((at + (kind,), values, f"{end} end {value_text(value)} is outside {name}: "
                              f"must be {describe(target)}"))
    return found


# --- model entries -------------------------------------------------------------------------------

def _model_names():
    from components.models import available_models

    return Literal[tuple(available_models())]


def _pixels():
    from components.data.binarization import PIXEL_FORMATS

    return Literal[PIXEL_FORMATS] | None


@cache
def _domain_view():
    from components.data.domains import TRANSFORMS

    class DomainView(Section):   # one domain of a model's domain view (components/data/domains.py)
        name: str
        transform: Literal[tuple(TRANSFORMS)] = "identity"

    return Annotated[list[DomainView], Field(min_length=2), AfterValidator(distinct_names)] | None


# The keys every model entry may have beside its model's own parameters: name -> its annotation
# (built when first needed). A new such key is one line here; architecture_params (below)
# keeps these out of the model's constructor parameters.
ENTRY = {
    "model": _model_names,                          # the model type (components/models/<model>.py)
    "pixels": _pixels,                              # binary | grayscale, for models of either kind
    "training": lambda: training_schema() | None,   # `train` settings for this model
    "sweep": lambda: Sweep | None,                  # a hyperparameter search (pipelines/sweep.py)
    "domains": _domain_view,                        # a domain view of the prepared data (data/domains.py)
}
ENTRY_KEYS = tuple(ENTRY)


@cache
def entry_schema(model: str) -> type[Section]:
    """A `models.<key>` entry of model type `model`: the entry keys and the model's `Params`."""
    from components.models import model_class

    params = section_class(model_class(model).Params)
    clash = set(params.model_fields) & set(ENTRY)
    if clash:
        raise TypeError(f"model {model!r}: parameters {sorted(clash)} clash with the entry keys of every model")
    fields = {name: (hint(), ... if name == "model" else None) for name, hint in ENTRY.items()}
    fields.update({name: (field_hint(params, name), None) for name in params.model_fields})
    return create_model(f"{model}_entry", __base__=Section, **fields,
                        __validators__={"rules": rules(model_class(model).Params, tuple(params.model_fields))})


def entry_problems(key: str, entry) -> list[tuple]:
    where = ("models", key)
    if not isinstance(entry, dict):
        return [(where, entry, "must be a mapping with `model:` and the model's parameters")]
    model = entry.get("model")
    found = checked(model, ENTRY["model"](), where + ("model",)) if "model" in entry else [
        (where + ("model",), MISSING, f"required: {describe(ENTRY['model']())}")]
    if found:
        return found
    schema = entry_schema(model)
    return checked(entry, schema, where) + sweep_problems(where + ("sweep",), entry.get("sweep"), schema)


# --- a model entry of params.yaml ----------------------------------------------------------------

def model_entry(params: dict, key: str) -> dict:
    """The entry `models.<key>`, with a clear error listing the configured models."""
    models = params.get("models") or {}
    if key not in models:
        raise ConfigError(f"no model {key!r} in params.yaml models; configured: {', '.join(models) or 'none'}")
    entry = dict(models[key])
    if "model" not in entry:
        raise ConfigError(f"models.{key} needs a `model:` naming its model type")
    return entry


def training_settings(params: dict, key: str) -> dict:
    """The shared `train` defaults overridden by `models.<key>.training`."""
    return {**(params.get("train") or {}), **(model_entry(params, key).get("training") or {})}


def architecture_params(params: dict, key: str) -> tuple[str, dict]:
    """(model type name, its constructor parameters) of the entry `models.<key>`: every key but
    the entry keys every model has (ENTRY: `training`, `pixels`, `sweep`, ...)."""
    entry = model_entry(params, key)
    name = entry.pop("model")
    for other in ENTRY_KEYS:
        entry.pop(other, None)
    return name, entry


# --- the whole file -------------------------------------------------------------------------------

SECTIONS = {"data": data_schema, "train": train_schema, "cluster": lambda: Cluster,
            "classifier": lambda: Classifier, "evaluate": lambda: Evaluate, "promote": lambda: Promote,
            "models": None}
REQUIRED = ("data", "train", "classifier", "evaluate", "models")


def problems(params: dict, sections=tuple(SECTIONS), entries=None, known=(), file: str = "params.yaml") -> list[str]:
    """One line per bad key of `sections` and of the model entries `entries` (keys; None: every entry
    when `sections` holds "models", else none), per unknown section, and per key of `known` (model
    keys a stage is given) that has no entry."""
    found = [((name,), KEY, f"unknown section; valid sections: {', '.join(SECTIONS)}")
             for name in params if name not in SECTIONS]
    for name in sections:
        if name not in params:
            if name in REQUIRED:
                found.append(((name,), MISSING, f"required section: {describe(SECTIONS[name]() or dict)}"))
            continue
        if name == "models":
            if not isinstance(params["models"], dict) or not params["models"]:
                found.append((("models",), params["models"], "must be a mapping of model keys to entries"))
            continue
        found += checked(params[name], SECTIONS[name](), (name,))
        if name == "data":
            found += data_problems(params["data"])
    models = params.get("models") if isinstance(params.get("models"), dict) else {}
    if entries is None:
        entries = list(models) if "models" in sections else []
    for key in [*entries, *known]:
        if key not in models:
            found.append((("models", key), KEY, f"no such model entry; configured: {', '.join(models) or 'none'}"))
        elif key not in known:
            found += entry_problems(key, models[key]) or settings_problems(params, key, sections)
    return [line(file, *problem) for problem in found]


def settings_problems(params: dict, key: str, sections) -> list[tuple]:
    """The training settings entry `key` resolves to: `train` and the entry's `training`, each valid on
    its own, may still break a rule across settings together (ema_decay in one, ema_kimg in the other)."""
    overrides = params["models"][key].get("training")
    if "train" not in sections or not overrides or checked(params.get("train"), train_schema()):
        return []
    return checked(training_settings(params, key), train_schema(), ("models", key, "training"))


def checked_params(sections=tuple(SECTIONS), entries=None, known=(), path=None) -> dict:
    """params.yaml, after checking what a stage reads: `sections`, the model entries `entries` and
    that the model keys `known` have entries. A ConfigError with one line per bad key otherwise."""
    path = path or repo_path("params.yaml")
    params = load_params(path)
    lines = problems(params, sections, entries, known, display_name(path))
    if lines:
        raise ConfigError("\n".join(lines))
    return params


def exit_on_bad_params(sections=tuple(SECTIONS), entries=None, known=()) -> None:
    """A stage's first act, run as a command: its params checked before it imports MLflow, Ray or
    its torch-heavy code, so a bad value ends it in a second, with one line per bad key."""
    try:
        checked_params(sections, entries, known)
    except ConfigError as error:
        sys.exit(str(error))


# --- documentation ---------------------------------------------------------------------------------

def _rows(prefix: str, model: type[Section]) -> list[tuple[str, str]]:
    rows = []
    for name in model.model_fields:
        hint = field_hint(model, name)
        nested, items = section_class(hint), hint_at(hint, (0,))
        if nested is not None:
            rows += _rows(f"{prefix}.{name}", nested)
        elif items is not None and section_class(items) is not None:   # a list or mapping of mappings
            bare = unwrap(optional(hint)[0])[0]
            rows += _rows(f"{prefix}.{name}" + ("[]" if typing.get_origin(bare) is list else ".<name>"),
                          section_class(items))
        else:
            rows.append((f"{prefix}.{name}", describe(hint)))
    return rows


def markdown() -> str:
    """The README's params section: every key and what it takes, from this schema."""
    from components.models import available_models, model_class

    out = ["| key | valid values |", "|---|---|"]
    for name, schema in SECTIONS.items():
        if schema is not None:
            out += [f"| `{key}` | {valid} |" for key, valid in _rows(name, schema())]
    out += [f"| `models.<key>.model` | {describe(ENTRY['model']())} |",
            f"| `models.<key>.pixels` | {describe(ENTRY['pixels']())} |",
            "| `models.<key>.training` | any `train` key, for this model |",
            f"| `models.<key>.domains` | {describe(ENTRY['domains']())}: a domain view of the prepared data |"]
    out += [f"| `{key}` | {valid} |" for key, valid in _rows("models.<key>.sweep", Sweep)]
    out += ["", "Model parameters (`models.<key>.<parameter>`; components/models/<model>.py):", "",
            "| model | parameters |", "|---|---|"]
    for model in available_models():
        params = section_class(model_class(model).Params)
        listed = "; ".join(f"`{name}`: {describe(field_hint(params, name))}" for name in params.model_fields)
        out.append(f"| {model} | {listed or 'none'} |")
    return "\n".join(out) + "\n"
