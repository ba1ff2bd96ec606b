"""The whole pipeline, for real: `dvc repro` in a temporary copy of the repository
with a tiny config; Ray Train, MLflow and DVC are the real ones."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.report import read_evaluation

from tiny_pipeline import KEYS, client, copy_repository, environment, free_port, post, ran_stages, run, server

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(tiny_pipeline, tmp_path) -> Path:
    """A copy of the repository with the tiny config after one `dvc repro` (tiny_pipeline.first_repro),
    each test's own: what one test changes no other sees, whatever their order."""
    return copy_repository(tiny_pipeline.pristine, tmp_path / "genzoo")


def test_repro_registers_every_model_with_a_champion(repo):
    log = (repo / "first-repro.log").read_text()
    assert set(ran_stages(log)) == {"prepare", "classifier", *(f"{s}@{k}" for s in ("train", "evaluate") for k in KEYS),
                                    "promote"}
    mlflow_client = client(repo)
    for key in KEYS:
        champion = mlflow_client.get_model_version_by_alias(f"genzoo-{key}", "champion")
        assert champion.tags["genzoo.promotion"].startswith("promoted")
        metrics = read_evaluation(repo / f"reports/{key}")   # metrics.json's numbers and evaluation.json
        assert (repo / f"reports/{key}/figures/samples.png").stat().st_size > 0
        assert (repo / f"reports/{key}/figures/completions.png").exists() == (key in ("nade",))
        assert (repo / f"models/{key}/model.pt").exists()
        # One prepared dataset, each model in its pixel format: the GAN asked for the 17-level intensities.
        levels = json.loads((repo / f"models/{key}/config.json").read_text())["spec"]["domains"][0]["levels"]
        assert levels == (17 if key == "gan" else 2)
        if key != "gan":
            assert metrics["test_nll"] > 0 and metrics["test_bits_per_dim"] > 0
        else:
            assert metrics["log_prob"].startswith("not supported")
            assert {"fid", "kid", "precision", "recall", "class_coverage"} <= set(metrics)
    # The comparison page shows every figure evaluate made, and the training curves, from its own folder.
    page = (repo / "comparison/index.html").read_text()
    pictures = [f"{key}/{png.name}" for key in KEYS for png in (repo / f"reports/{key}/figures").glob("*.png")]
    pictures += [f"{key}/curves.png" for key in KEYS]
    assert page.count("<img") == len(pictures)
    assert all(f'src="{p}"' in page and (repo / "comparison" / p).is_file() for p in pictures)
    # Progress is visible, Ray's internal chatter is not, nor MLflow's nagging about predict's type hints.
    assert "[nade] epoch 2/2" in log
    assert "Failed to query Ray Train Controller" not in log and "Reporting training result" not in log
    assert "Add type hints" not in log


def prepared_md5(repo: Path) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/prepared")


def test_mlflow_holds_a_leaderboard_of_models_linked_to_their_data_runs_and_cards(repo):
    import mlflow

    mlflow_client = client(repo)
    experiment = mlflow_client.get_experiment_by_name("genzoo")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    digest = prepared_md5(repo)
    models = {m.name: m for m in mlflow_client.search_logged_models([experiment.experiment_id])}
    assert set(models) == set(KEYS)   # named after their params keys: a leaderboard, not eleven `model`s
    for key, logged in models.items():
        measured = {m.key: m for m in logged.metrics}
        wanted = {"fid"} if key == "gan" else {"test_nll", "test_bits_per_dim"}
        assert wanted <= set(measured)
        assert all(m.dataset_digest == digest and m.dataset_name == "digits-static" for m in logged.metrics)
        assert not {"levels", "parameters", "iwae_samples"} & set(measured)   # settings are params
        assert logged.params["data.digest"] == digest and "model.parameters" in logged.params
        assert logged.tags["genzoo.key"] == key and logged.tags["genzoo.paper"]

        train = mlflow_client.get_run(logged.source_run_id)
        assert train.info.run_name == f"train-{key}"
        assert [(d.dataset.name, d.dataset.digest) for d in train.inputs.dataset_inputs] == [("digits-static", digest)]
        assert "samples.png" in {a.path for a in mlflow_client.list_artifacts(train.info.run_id)}
        children = mlflow_client.search_runs([experiment.experiment_id],
                                             f"tags.mlflow.parentRunId = '{train.info.run_id}'")
        evaluation = [r for r in children if r.info.run_name == f"evaluate-{key}"]
        assert len(evaluation) == 1 and evaluation[0].data.params["evaluate.iwae_samples"] == "10"
        assert not any(k.startswith("eval_") for k in train.data.metrics)   # evaluation is not the training run
        assert evaluation[0].data.metrics[next(iter(wanted))] == measured[next(iter(wanted))].value
        assert evaluation[0].info.end_time <= time.time() * 1000 and train.info.end_time < evaluation[0].info.start_time

        registered = mlflow_client.get_registered_model(f"genzoo-{key}")
        assert registered.description.startswith(f"# genzoo-{key}\n") and "promoted on" in registered.description
        version = mlflow_client.get_model_version_by_alias(f"genzoo-{key}", "champion")
        assert version.description.startswith(f"{key} v1: promoted: first registered version")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
        try:
            signature = mlflow.models.get_model_info(f"models:/genzoo-{key}@champion").signature
        finally:
            mlflow.set_tracking_uri(previous)
        assert "num_samples" in signature.inputs.input_names() or key == "bernoulli" and "0" in signature.inputs.input_names()
    assert models["nade"].tags["genzoo.paper"].startswith("NADE (Larochelle & Murray, 2011)")


def test_the_ui_server_lists_every_model_with_its_test_metrics(repo):
    port = free_port()
    with server(["mlflow", "ui", "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}", "--host", "127.0.0.1",
                 "--port", str(port)], repo, port, "/health") as url:
        experiment = client(repo).get_experiment_by_name("genzoo").experiment_id
        with urllib.request.urlopen(f"{url}/", timeout=30) as page:
            assert b"MLflow" in page.read()
        status, found = post(f"{url}/ajax-api/2.0/mlflow/logged-models/search",
                             {"experiment_ids": [experiment],
                              "order_by": [{"field_name": "metrics.test_nll", "ascending": True}]})
        assert status == 200
        rows = {m["info"]["name"]: {x["key"]: x["value"] for x in m["data"].get("metrics", [])}
                for m in found["models"]}
        assert set(rows) == set(KEYS)
        assert all(rows[k]["test_nll"] > 0 for k in KEYS if k != "gan") and rows["gan"]["fid"] >= 0


def test_mlflow_models_serve_answers_samples_and_log_likelihoods_of_the_champion(repo):
    port = free_port()
    with server(["mlflow", "models", "serve", "-m", "models:/genzoo-nade@champion", "--env-manager", "local",
                 "-h", "127.0.0.1", "-p", str(port)], repo, port, "/ping") as url:
        status, samples = post(f"{url}/invocations",
                               {"dataframe_split": {"columns": ["num_samples", "seed"], "data": [[4, 0]]}})
        assert status == 200
        images = np.asarray(samples["predictions"])
        assert images.shape == (4, 1, 8, 8) and set(np.unique(images)) <= {0.0, 1.0}
        pixels = images.reshape(4, -1)
        status, log_p = post(f"{url}/invocations", {"dataframe_split": {
            "columns": [str(i) for i in range(64)], "data": pixels.tolist()}})
        assert status == 200
        assert len(log_p["predictions"]) == 4 and all(v < 0 for v in log_p["predictions"])
        status, refusal = post(f"{url}/invocations",
                               {"dataframe_split": {"columns": ["num_samples"], "data": [["many"]]}})
        assert 400 <= status < 500 and "not compatible with model signature" in refusal["message"], refusal


def test_a_second_repro_runs_nothing_and_dvc_reads_metrics(repo):
    second = run(["dvc", "repro"], repo)
    assert ran_stages(second.stdout) == []
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert "test_nll" in shown and "fid" in shown


NEW_MODEL = '''"""A model added after the pipeline ran."""
from components.models.base import GenerativeModel


class Newcomer(GenerativeModel):
    name = "newcomer"
    family = "explicit"
'''


def test_adding_a_model_file_reruns_nothing_and_editing_one_reruns_only_its_model(repo):
    def changed() -> set[str]:
        return set(json.loads(run(["dvc", "status", "--json"], repo).stdout))

    added = repo / "components/models/newcomer.py"
    added.write_text(NEW_MODEL)
    try:
        assert changed() == set()
    finally:
        added.unlink()
    gan = repo / "components/models/gan.py"
    code = gan.read_text()
    gan.write_text(code + "\n# edited\n")
    try:
        assert changed() == {"train@gan", "evaluate@gan"}
    finally:
        gan.write_text(code)
    assert changed() == set()


def test_registered_model_loads_and_predicts_without_the_repository(repo, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        import mlflow, numpy as np, pandas as pd
        mlflow.set_tracking_uri("sqlite:///{repo / 'mlflow.db'}")
        nade = mlflow.pyfunc.load_model("models:/genzoo-nade@champion")
        import components
        samples = nade.predict(pd.DataFrame({{"num_samples": [5], "seed": [1]}}))
        log_p = nade.predict(pd.DataFrame(samples.reshape(5, -1)).rename(columns=str))
        gan = mlflow.pyfunc.load_model("models:/genzoo-gan@champion")
        try:
            gan.predict(pd.DataFrame(samples.reshape(5, -1)).rename(columns=str))
            refusal = None
        except Exception as error:
            refusal = str(error)
        print(json.dumps({{"components": components.__file__, "samples": list(samples.shape),
                          "min": float(samples.min()), "max": float(samples.max()),
                          "log_p": np.asarray(log_p).tolist(),
                          "gan": list(gan.predict(pd.DataFrame({{"num_samples": [3]}})).shape),
                          "gan_log_p": refusal}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={k: v for k, v in environment(repo).items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert "/artifacts/code/components/" in out["components"]  # the copy bundled with the model, not genzoo's
    assert out["samples"] == [5, 1, 8, 8] and 0 <= out["min"] <= out["max"] <= 1
    assert len(out["log_p"]) == 5 and all(v < 0 for v in out["log_p"])
    assert out["gan"] == [3, 1, 8, 8]
    assert "gan cannot serve log-likelihoods of images: it declares sample" in out["gan_log_p"]


def test_changing_one_model_reruns_only_its_stages_and_promote(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["bernoulli"]["pseudocount"] = 1.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], repo)
    assert sorted(ran_stages(result.stdout)) == ["evaluate@bernoulli", "promote", "train@bernoulli"]
    versions = client(repo).search_model_versions("name='genzoo-bernoulli'")
    assert len(versions) == 2
    newest = max(versions, key=lambda v: int(v.version))
    assert newest.tags["genzoo.promotion"].startswith(("promoted", "not promoted"))
    assert "test_nll" in newest.tags["genzoo.promotion"]  # the reason names the compared metric
    promotion = json.loads((repo / "comparison/promotion.json").read_text())
    assert {r["key"]: r["new_version"] for r in promotion} == {k: k == "bernoulli" for k in KEYS}


def test_a_killed_training_run_resumes_from_its_last_checkpoint(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["nade"]["training"] = {"epochs": 60, "patience": 60, "cpus_per_worker": "auto"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    process = subprocess.Popen([sys.executable, "-m", "pipelines.train", "nade"], cwd=repo, env=environment(repo),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    while not list(repo.glob("ray_results/nade-*/checkpoint_*")) and time.time() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its local Ray and the worker: a hard crash
    process.wait()
    assert list(repo.glob("ray_results/nade-*/checkpoint_*")), "no checkpoint was written before the kill"

    result = run([sys.executable, "-m", "pipelines.train", "nade"], repo, timeout=900)
    output = result.stdout + result.stderr
    assert "resuming from the checkpoint of epoch" in output
    resumed_at = int(output.split("resuming from the checkpoint of epoch ")[1].split()[0])
    assert resumed_at >= 1
    assert f"[nade] epoch {resumed_at + 1}/60" in output and f"[nade] epoch {resumed_at}/60" not in output
    summary = json.loads((repo / "models/nade/training.json").read_text())
    assert summary["epochs_trained"] == 60
    # cpus_per_worker auto: one stage training alone gets every CPU of the local Ray as torch threads
    assert [w["threads"] for w in summary["workers"]] == [os.cpu_count() or 1]
