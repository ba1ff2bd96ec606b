"""Every bad value in params.yaml gets a one-line error naming the key, before any work starts.

For every leaf of the default params.yaml, and every parameter of every registered model, a value
of the wrong type and (where the key has a range or choices) one outside them are written in turn,
and the stage that reads the key runs as its command does (`python -m pipelines.<stage>`: in this
process through runpy for speed, a few as real processes): it must end non-zero, without a
traceback, naming the key path, and leave its folder as it was (no data, model, Ray or MLflow files).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import runpy
import subprocess
import sys
import typing
from pathlib import Path

import annotated_types
import pytest
import yaml

from components.config import hint_at, is_union, optional, unwrap
from components.schema import SECTIONS, entry_schema

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())
WRONG_TYPE = {"wrong": "type"}   # a mapping: no scalar, list or choice accepts it


def stage_of(path: tuple) -> tuple[str, list[str]]:
    """The command that reads the key at `path`: (module, arguments)."""
    section = path[0]
    if section == "models":
        return "pipelines.train", [path[1]]
    return {"data": ("pipelines.prepare", []), "classifier": ("pipelines.train_classifier", []),
            "train": ("pipelines.train", ["nade"]), "cluster": ("pipelines.train", ["nade"]),
            "evaluate": ("pipelines.evaluate", ["nade"]), "promote": ("pipelines.promote", [])}[section]


def leaves(value, path: tuple = ()):
    """(path, value) of every scalar, empty mapping and list item below `value`."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, path + (key,))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, path + (index,))
    else:
        yield path, value


def schema_hint(params: dict, path: tuple):
    """The annotation params.yaml's key at `path` is checked against (a sweep's values: the searched
    parameter's or setting's)."""
    if path[0] != "models":
        return hint_at(SECTIONS[path[0]](), path[1:])
    entry = entry_schema(params["models"][path[1]]["model"])
    if path[2:4] == ("sweep", "space") and len(path) > 6:
        searched = path[4].removeprefix("training.")
        return hint_at(SECTIONS["train"](), (searched,)) if searched != path[4] else hint_at(entry, (searched,))
    return hint_at(entry, path[2:])


def outside(hint) -> list:
    """Values just outside a declared range, or an unknown choice; none for a string or a boolean."""
    bare, constraints = unwrap(optional(hint)[0])
    if is_union(hint):   # e.g. an integer >= 1 or 'auto'
        return [value for option in typing.get_args(bare) for value in outside(option)]
    if typing.get_origin(bare) is typing.Literal:
        return ["no_such_choice"]
    found = []
    for c in constraints:
        if isinstance(c, annotated_types.Ge):
            found.append(c.ge - 1 if bare is int else c.ge - 0.5)
        elif isinstance(c, annotated_types.Gt):
            found.append(c.gt)
        elif isinstance(c, annotated_types.Le):
            found.append(c.le + 1)
        elif isinstance(c, annotated_types.Lt):
            found.append(c.lt)
    return found


def written(params: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(params)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


def run_stage(folder: Path, module: str, argv: list[str]) -> tuple[int, str]:
    """`python -m <module> <argv>` in `folder`, in this process: (exit status, what it printed to stderr)."""
    stderr, before = io.StringIO(), (sys.argv, os.getcwd())
    sys.argv = [module, *argv]
    os.chdir(folder)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
        status = 0
    except SystemExit as exit:
        # sys.exit("message"): the interpreter prints the message and exits with status 1.
        status = 1 if isinstance(exit.code, str) else (exit.code or 0)
        if isinstance(exit.code, str):
            stderr.write(exit.code + "\n")
    finally:
        sys.argv = before[0]
        os.chdir(before[1])
    return status, stderr.getvalue()


def cases(params: dict, skip=()) -> list[tuple[tuple, object]]:
    """(key path, bad value) for every leaf of `params` (but those in `skip`)."""
    found = []
    for path, value in leaves(params):
        if path not in skip:
            found.append((path, WRONG_TYPE if value != {} else "wrong"))
            found += [(path, bad) for bad in outside(schema_hint(params, path))]
    return found


CASES = cases(DEFAULT)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path


def assert_refused(folder: Path, params: dict, path_text: str, module: str, argv: list[str]) -> str:
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status, stderr = run_stage(folder, module, argv)
    assert status != 0, f"{module} {argv} accepted {path_text}"
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"params.yaml: {path_text}"), (path_text, stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["params.yaml"], f"{module} wrote output for {path_text}"
    assert not ("ray" in sys.modules and sys.modules["ray"].is_initialized()), f"{module} started Ray"
    return lines[0]


def key_text(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def test_every_leaf_of_the_default_params_refuses_a_wrong_type_and_a_value_out_of_range(folder):
    messages = {}
    for path, bad in CASES:
        module, argv = stage_of(path)
        messages[key_text(path), repr(bad)] = assert_refused(folder, written(DEFAULT, path, bad), key_text(path),
                                                             module, argv)
    numeric = [p for p, v in leaves(DEFAULT) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    unbounded = [key_text(p) for p in numeric if not outside(schema_hint(DEFAULT, p))]
    assert not unbounded, f"numeric keys without a declared range: {unbounded}"
    # What is valid, spelled out (a few checked word for word):
    assert messages["train.batch_size", "0"] == "params.yaml: train.batch_size = 0: must be an integer >= 1"
    assert messages["train.lr", "0"] == "params.yaml: train.lr = 0: must be a number > 0"
    assert messages["models.nade.hidden_units", "0"] == (
        "params.yaml: models.nade.hidden_units = 0: must be an integer >= 1")
    assert messages["data.binarize", "'no_such_choice'"] == (
        "params.yaml: data.binarize = 'no_such_choice': must be one of none, static, dynamic")
    assert messages["models.dcgan.loss", "'no_such_choice'"] == (
        "params.yaml: models.dcgan.loss = 'no_such_choice': must be one of nonsaturating, lsgan, wgan_gp")
    assert messages["data.threshold", "1"] == "params.yaml: data.threshold = 1: must be a number in [0, 1)"
    print(f"\n{len(CASES)} bad values of {len(list(leaves(DEFAULT)))} leaves: every one refused with its key")


def with_overlay(name: str) -> dict:
    """params.yaml under a benchmark's overlay, merged as benchmarks/pipeline_walltime.py merges it."""
    params = copy.deepcopy(DEFAULT)
    for section, values in yaml.safe_load((REPO / f"benchmarks/{name}_pipeline.yaml").read_text()).items():
        if section != "models" and isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    return params


SWEEP = {"trials": 3, "concurrent": 1, "grace_epochs": 2,
         "space": {"hidden_units": {"choice": [16, 32]}, "ordering_seed": {"randint": [0, 4]},
                   "training.lr": {"loguniform": [0.0001, 0.01]}}}


def test_every_leaf_of_the_image_to_image_configs_and_of_a_sweep_is_checked_too(folder):
    """What the default params.yaml lacks: data domains, a schedule kind, cyclegan's and stargan's
    entries, a sweep space (its values against the searched parameter's range)."""
    tried = []
    default = {path for path, _ in leaves(DEFAULT)}
    for params in (with_overlay("cyclegan"), with_overlay("stargan"),
                   written(DEFAULT, ("models", "nade", "sweep"), SWEEP)):
        for path, bad in cases(params, skip=default):
            module, argv = stage_of(path)
            # A range's bounds are judged together: the key is the distribution, [low, high] its value.
            shown = path[:-1] if path[-2:-1] in (("uniform",), ("loguniform",), ("randint",)) else path
            assert_refused(folder, written(params, path, bad), key_text(shown), module, argv)
            tried.append(key_text(shown))
    assert {"data.domains[1].transform", "models.nade.sweep.grace_epochs",
            "models.nade.sweep.space.hidden_units.choice[1]", "models.nade.sweep.space.training.lr.loguniform",
            } <= set(tried)
    # cyclegan's and stargan's entries (domain views) are default leaves: the test above tries them
    assert {"models.cyclegan.training.schedule.decay_fraction", "models.cyclegan.known_mapping",
            "models.stargan.labels", "models.cyclegan.domains[1].transform"} <= {key_text(p) for p in default}
    print(f"\n{len(tried)} bad values on the leaves of data domains, schedules, image-to-image entries and a sweep")


def test_every_parameter_of_every_model_refuses_a_wrong_type_and_a_value_out_of_range(folder):
    from components.models import REGISTRY

    tried, unbounded = 0, []
    for name, cls in sorted(REGISTRY.items()):
        if not cls.__module__.startswith("components."):
            continue   # models the tests define for themselves
        schema = entry_schema(name)
        for field in (f for f in schema.model_fields if f not in ("model", "pixels", "training", "sweep", "domains")):
            hint = hint_at(schema, (field,))
            is_list = typing.get_origin(unwrap(optional(hint)[0])[0]) is list
            bads = [((field,), WRONG_TYPE)] + [((field,), bad) for bad in outside(hint)]
            if is_list:
                bads += [((field, 0), bad) for bad in [WRONG_TYPE, *outside(hint_at(hint, (0,)))]]
            number = hint_at(hint, (0,)) if is_list else hint
            if unwrap(optional(number)[0])[0] in (int, float) and not outside(number):
                unbounded.append(f"{name}.{field}")
            for path, bad in bads:
                value = [bad] if len(path) == 2 else bad
                params = written(DEFAULT, ("models", "probe"), {"model": name, field: value})
                assert_refused(folder, params, key_text(("models", "probe", *path)), "pipelines.train", ["probe"])
                tried += 1
    assert not unbounded, f"numeric model parameters without a declared range: {unbounded}"
    print(f"\n{tried} bad model parameters (every parameter of {len(REGISTRY)} models) refused with their key")


def test_several_bad_keys_are_listed_together(folder):
    params = written(written(written(DEFAULT, ("train", "batch_size"), 0), ("train", "lr"), "fast"),
                     ("models", "nade", "training"), {"epochs": -3})
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    status, stderr = run_stage(folder, "pipelines.train", ["nade"])
    assert status == 1 and stderr.splitlines() == [
        "params.yaml: train.batch_size = 0: must be an integer >= 1",
        "params.yaml: train.lr = 'fast': must be a number > 0",
        "params.yaml: models.nade.training.epochs = -3: must be an integer >= 1",
    ]


def test_an_unknown_section_is_refused_by_every_stage(folder):
    params = {**DEFAULT, "trian": {"epochs": 3}}
    for module, argv in dict(stage_of((section, "nade")) for section in SECTIONS).items():
        assert_refused(folder, params, "trian: unknown section; valid sections: data, train", module, argv)


def test_an_unknown_key_in_a_sweep_space_and_a_value_outside_its_parameter_are_named(folder):
    sweep = {"trials": 2, "space": {"hidden_units": {"choice": [16, 0]}, "hiden_units": {"choice": [8]},
                                    "training.lr": {"loguniform": [0, 0.01]}}}
    (folder / "params.yaml").write_text(yaml.safe_dump(written(DEFAULT, ("models", "nade", "sweep"), sweep)))
    status, stderr = run_stage(folder, "pipelines.train", ["nade"])
    assert status == 1 and stderr.splitlines() == [
        "params.yaml: models.nade.sweep.space.hidden_units.choice[1] = 0: must be an integer >= 1 (hidden_units)",
        "params.yaml: models.nade.sweep.space.hiden_units: nothing to search; searchable: hidden_units, ordering, "
        "ordering_seed, training.lr, training.batch_size, training.patience, training.seed",
        "params.yaml: models.nade.sweep.space.training.lr.loguniform = [0, 0.01]: must be [low, high] with "
        "0 < low < high",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["params.yaml"]


def test_a_sweep_of_one_trial_is_suspicious_but_valid():
    from components.schema import problems

    one = {"trials": 1, "concurrent": 1, "space": {"hidden_units": {"choice": [16]}}}
    assert problems(written(DEFAULT, ("models", "nade", "sweep"), one)) == []


def environment() -> dict:
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONPATH": str(REPO)}


def test_as_a_process_a_bad_value_ends_the_stage_before_mlflow_or_ray_is_imported(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(written(DEFAULT, ("train", "batch_size"), 0)))
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipelines.train", "nade"], cwd=tmp_path,
                            capture_output=True, text=True, env=environment(), timeout=300)
    imported = {m.group(1) for m in re.finditer(r"^import time:.*\|\s+(\S+)$", result.stderr, re.M)}
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert result.returncode == 1 and said == ["params.yaml: train.batch_size = 0: must be an integer >= 1"]
    assert "torch" in imported and not {"mlflow", "ray", "matplotlib"} & imported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("  batch_size: 64", "  batch_size: [64", 1)
    (tmp_path / "params.yaml").write_text(text)
    row = next(i for i, line in enumerate(text.splitlines(), 1) if "batch_size: [64" in line)
    result = subprocess.run([sys.executable, "-m", "pipelines.prepare"], cwd=tmp_path, capture_output=True,
                            text=True, env=environment(), timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(rf"params.yaml:{row + 1}:\d+: YAML syntax error: .* starts at line {row}, column 15\)\n",
                        result.stderr), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_the_check_command_passes_the_default_params_and_lists_every_bad_key(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.check"], cwd=REPO, capture_output=True, text=True,
                            env=environment(), timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("params.yaml: valid; 19 model(s): bernoulli"), (
        result.stdout + result.stderr)
    from pipelines.check import main

    bad = written(written(DEFAULT, ("data", "source"), "mnsit"), ("models", "gan", "latent_dim"), 0)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert main([str(tmp_path / "bad.yaml")]) == 1
    assert [line.split(": ", 1)[1] for line in errors.getvalue().splitlines()] == [
        "data.source = 'mnsit': must be one of binarized_mnist, cifar10, digits, fashion_mnist, image_folder, "
        "mnist, photo_patches (or null)",
        "models.gan.latent_dim = 0: must be an integer >= 1",
    ]


def test_the_parameters_page_is_the_schema():
    readme = (REPO / "PARAMETERS.md").read_text()
    section = re.search(r"<!-- params: .*? -->\n(.*?)<!-- /params -->", readme, re.S)
    assert section, "PARAMETERS.md: the params section between <!-- params: ... --> and <!-- /params -->"
    # the command a person runs, in its own process: tests here register toy models of their own
    generated = subprocess.run([sys.executable, "-m", "pipelines.check", "--markdown"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
    assert section.group(1) == generated, "PARAMETERS.md is stale: python -m pipelines.check --markdown"


def test_repro_checks_the_whole_file_before_running_any_stage(folder):
    params = written(written(DEFAULT, ("models", "gan", "hidden_units"), 0), ("data", "seed"), -1)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    status, stderr = run_stage(folder, "pipelines.repro", ["--jobs", "2"])
    assert status == 1 and stderr.splitlines() == ["params.yaml: data.seed = -1: must be an integer >= 0",
                                                   "params.yaml: models.gan.hidden_units = 0: must be an integer >= 1"]
    assert sorted(p.name for p in folder.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("changes, expected", [
    # a model's range, declared on its Params (progan fades each new block in over a share > 0 of its phase)
    ({("models", "progan", "fade_fraction"): 0.0}, "models.progan.fade_fraction = 0.0: must be a number in (0, 1]"),
    # the training settings' one declaration (components/training/fit.py) refuses what it does not know
    ({("train", "batch_sise"): 64}, "train.batch_sise: unknown key; valid keys: epochs, batch_size, lr, patience, "),
    ({("models", "nade", "training"): {"epoch": 3}}, "models.nade.training.epoch: unknown key; valid keys: epochs, "),
    ({("train", "schedule"): {"kind": "step", "step_epochs": 0}},
     "train.schedule.step_epochs = 0: must be an integer >= 1"),
    # photo_patches needs an image in each of train, valid and test: one range, in the schema
    ({("data", "count"): 2}, "data.count = 2: must be an integer >= 3 (or null)"),
    # rules across keys, declared beside the keys (a Params' __post_init__) and run by the schema
    ({("models", "vae", "train_samples"): 5, ("models", "vae", "beta"): 2.0},
     "models.vae: beta and kl_warmup_epochs weight the ELBO's KL term; the IWAE objective (train_samples > 1) "
     "has none"),
    ({("train", "ema_kimg"): 10, ("train", "ema_decay"): 0.999}, "train: set one of ema_decay (per step) and ema_kimg"),
    # ... and across `train` and an entry's `training`, each valid alone (progan's sets ema_kimg)
    ({("train", "ema_decay"): 0.999}, "models.progan.training: set one of ema_decay (per step) and ema_kimg"),
    ({("models", "vae", "architecture"): "conv", ("models", "vae", "conv_channels"): []},
     "models.vae: architecture 'conv' needs at least one entry in conv_channels"),
    ({("models", "aae", "architecture"): "conv", ("models", "aae", "conv_channels"): []},
     "models.aae: architecture 'conv' needs at least one entry in conv_channels"),
    # gan_cls's matching-aware discriminator has no WGAN critic: its own choices of loss
    ({("models", "gan_cls", "loss"): "wgan_gp"}, "models.gan_cls.loss = 'wgan_gp': must be one of nonsaturating, lsgan"),
    # a source's side, the data's domains and a model's domain view: the schema's alone (data/domains.py,
    # data/sources/images.py trust it)
    ({("data", "image_size"): 1}, "data.image_size = 1: must be an integer >= 2 (or null)"),
    ({("data", "domains"): [{"name": "a", "source": "digits"}, {"name": "a", "source": "digits", "transform": "thin"}]},
     "data.domains: domain 'a' is named twice"),
    ({("data", "domains"): [{"name": "a", "source": "digits", "size": 8}]},
     "data.domains[0].size: unknown key; valid keys: name, source, transform, path, image_size, count"),
    ({("data", "domains"): [{"name": "a", "source": "digits", "transform": "blur"}]},
     "data.domains[0].transform = 'blur': must be one of identity, thicken"),
    ({("data", "domains"): [{"name": "a", "source": "no_such_source"}]},
     "data.domains[0].source = 'no_such_source': must be one of "),
    ({("models", "cyclegan", "domains"): [{"name": "plain"}]}, "models.cyclegan.domains = [{name: 'plain'}]: "
     "must be a list of at least 2 (each mapping with keys name, transform) (or null)"),
    ({("models", "cyclegan", "domains"): [{"name": "a"}, {"name": "b", "source": "mnist"}]},
     "models.cyclegan.domains[1].source: unknown key; valid keys: name, transform"),
    ({("models", "cyclegan", "domains"): [{"name": "a"}, {"name": "a", "transform": "thin"}]},
     "models.cyclegan.domains: domain 'a' is named twice"),
])
def test_each_parameter_is_checked_once_by_the_schema_in_one_line(tmp_path, changes, expected):
    """Each parameter has one check, the schema's, whoever declares it (a model, the trainer, a data
    source): `python -m pipelines.check` names a bad value in one line, before anything runs."""
    from pipelines.check import main

    params = DEFAULT
    for path, value in changes.items():
        params = written(params, path, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        assert main([str(tmp_path / "params.yaml")]) == 1
    lines = errors.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].split(": ", 1)[1].startswith(expected), lines


def test_a_training_setting_without_a_default_is_required():
    from components.errors import ConfigError
    from components.schema import problems
    from components.training import Settings

    params = copy.deepcopy(DEFAULT)
    del params["train"]["epochs"]
    assert problems(params, sections=("train",)) == ["params.yaml: train.epochs: required: an integer >= 1"]
    with pytest.raises(ConfigError, match="^training: epochs: required: an integer >= 1$"):
        Settings.from_dict({k: v for k, v in DEFAULT["train"].items() if k != "epochs"})
