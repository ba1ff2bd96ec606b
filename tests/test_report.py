"""The comparison page's leaderboard, grouped by family, on hand-made results: which group each model
is in, which columns each group shows, and where the champion is."""

import json
import html
import re

from components import report


def result(key, model, family, capabilities, metrics, version=1, champion_version=1, **decision):
    return {"key": key, "version": version, "champion_version": champion_version, "reason": f"why {key}",
            **decision, "metrics": {"model": model, "family": family, "capabilities": capabilities,
                                    "pixels": "binary", "parameters": 10, **metrics}}


RESULTS = [
    result("gan", "gan", "adversarial", ["sample"], {"promotion_metric": "fid", "fid": 30.0, "kid": 0.1,
                                                     "precision": 0.5, "recall": 0.4, "levels": 17}),
    result("nade", "nade", "explicit", ["complete", "log_prob", "sample"],
           {"promotion_metric": "test_nll", "test_nll": 40.0, "test_bits_per_dim": 0.9, "fid": 12.0},
           version=3, champion_version=2, alias="challenger", champion_set_by="person"),
    result("cyclegan", "cyclegan", "adversarial", ["translate"],
           {"promotion_metric": "translation_fid", "translation_fid": 9.0, "translation_fid_of_identity": 20.0,
            "cycle_error_x": 0.1, "cycle_error_y": 0.2, "known_mapping_error": 0.3,
            "sample_quality": "not supported: cyclegan cannot sample"}),
    result("vae", "vae", "latent", ["decode", "encode", "log_prob", "sample"],
           {"promotion_metric": "test_nll", "test_nll": 45.0, "test_elbo": -47.0, "fid": 20.0,
            "linear_probe_accuracy": 0.8}, version=2, champion_version=1),
    result("bernoulli", "bernoulli", "explicit", ["log_prob", "sample"],
           {"promotion_metric": "test_nll", "test_nll": 50.0, "test_bits_per_dim": 1.1}),
    result("flow", "realnvp", "flow", ["log_prob", "sample"], {"promotion_metric": "test_nll", "test_nll": 30.0}),
]


def test_models_are_grouped_by_family_and_each_group_shows_its_own_columns():
    groups = [(title, columns, [r["key"] for r in members]) for title, columns, members in report.leaderboard(RESULTS)]
    assert groups == [
        ("image-to-image", ["pixels", "parameters", "translation_fid", "translation_fid_of_identity",
                            "cycle_error_x", "cycle_error_y", "known_mapping_error"],
         ["cyclegan"]),   # an adversarial model that translates is judged on translation
        ("explicit likelihood (autoregressive and others)",
         ["pixels", "parameters", "test_nll", "test_bits_per_dim", "fid"], ["nade", "bernoulli"]),
        ("latent variable", ["pixels", "parameters", "test_nll", "test_elbo", "fid", "linear_probe_accuracy"],
         ["vae"]),
        ("adversarial", ["pixels", "parameters", "fid", "kid", "precision", "recall"], ["gan"]),
        ("flow", ["pixels", "parameters", "test_nll"], ["flow"]),   # a family no group names yet
    ]


def text(cell: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())


def tables(page: str) -> dict[str, list[list[str]]]:
    """Group title -> the rows of its table (header first), cells as plain text."""
    return {title: [[text(cell) for cell in re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.S)]
                    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
            for title, table in re.findall(r"<h3>(.*?)</h3>.*?<table>(.*?)</table>", page, re.S)}


def test_the_page_shows_one_table_per_group_with_the_champion_marked(tmp_path):
    card = {"source": "digits", "image_shape": [1, 8, 8], "binarization": "static"}
    page = report.page(RESULTS, card, tmp_path)
    shown = tables(page)
    assert list(shown) == ["image-to-image", "explicit likelihood (autoregressive and others)", "latent variable",
                           "adversarial", "flow"]
    explicit = shown["explicit likelihood (autoregressive and others)"]
    assert explicit[0] == ["model", "capabilities", "registry", "pixels", "parameters", "test_nll",
                           "test_bits_per_dim", "fid"]
    assert explicit[1] == ["nade (nade)", "complete, log_prob, sample",
                           "v3 challenger; champion: v2 (set by a person) why nade", "binary", "10", "40", "0.9",
                           "12"]
    assert explicit[2] == ["bernoulli (bernoulli)", "log_prob, sample", "v1 \U0001F451 champion why bernoulli",
                           "binary", "10", "50", "1.1", "—"]
    assert shown["latent variable"][1][2] == "v2 champion: v1 why vae"
    assert shown["image-to-image"][1][3:] == ["binary", "10", "9", "20", "0.1", "0.2", "0.3"]
    assert page.count('class="champion"') == 4   # gan, cyclegan, bernoulli and flow hold it; nade and vae not
    assert [p for p in re.findall(r"<p>Promoted on (.*?) \(lower is better\)", page)] == [
        "translation_fid", "test_nll", "test_nll", "fid", "test_nll"]


def test_a_group_always_shows_the_metric_its_models_are_promoted_on():
    latent = result("aae", "aae", "latent", ["decode", "encode", "sample"],
                    {"promotion_metric": "wasserstein_distance", "wasserstein_distance": 0.5, "fid": 3.0})
    assert report.leaderboard([latent]) == [
        ("latent variable", ["pixels", "parameters", "fid", "wasserstein_distance"], [latent])]


def test_metrics_json_holds_numbers_only_and_the_reasons_go_beside_it(tmp_path):
    from components.report import read_evaluation, write_evaluation

    recorded = {"model": "gan", "family": "adversarial", "capabilities": ["sample"], "fid": 12.5, "parameters": 9,
                "log_prob": "not supported: gan defines no likelihood",
                "anomaly_auroc_holdout": "not measured: data.holdout_class is not set", "early": True}
    write_evaluation(tmp_path, recorded)
    numbers = json.loads((tmp_path / "metrics.json").read_text())
    assert numbers == {"fid": 12.5, "parameters": 9}   # what `dvc metrics show` shows: no sentences
    described = json.loads((tmp_path / "evaluation.json").read_text())
    assert described["not_measured"] == {"log_prob": "not supported: gan defines no likelihood",
                                         "anomaly_auroc_holdout": "not measured: data.holdout_class is not set"}
    assert described["model"] == "gan" and described["early"] is True
    assert read_evaluation(tmp_path) == recorded   # the page and promote see the whole record
