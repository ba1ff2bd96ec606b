"""DVC stage `promote`: register every trained model and move each family's
`champion` alias to the new version only when it beats the current champion.

Each model key `k` of params.yaml is the registered model `genzoo-k`. A
version is registered once per trained model (found again by its MLflow model
id), tagged with its evaluation metric, and tagged with the decision and its
reason. The stage also writes `comparison/index.html`: every model side by
side, its figures, sample grid and training curves.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from components.atomic import atomic_directory
from components.config import load_params, repo_path
from pipelines import tracking

ALIAS = "champion"
LATENT_PICTURES = [("reconstructions.png", "reconstructions: test images, then their reconstructions"),
                   ("interpolations.png", "interpolations between two test images' codes"),
                   ("latent_scatter.png", "test codes coloured by label")]


def registered_version(client: MlflowClient, name: str, logged: dict):
    """The version already registered for this trained model, else a new one."""
    try:
        for version in client.search_model_versions(f"name='{name}'"):
            if version.tags.get("genzoo.model_id") == logged["model_id"]:
                return version, False
    except MlflowException:
        pass
    version = mlflow.register_model(logged["model_uri"], name, tags={"genzoo.model_id": logged["model_id"]})
    return version, True


def current_champion(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def decide(metric: str, value: float | None, champion, version) -> tuple[bool, str]:
    """(promote?, why). Lower is better for every family metric."""
    if champion is None:
        return True, "first registered version: no champion yet"
    if champion.version == version.version:
        return False, f"already the champion (v{champion.version})"
    best = champion.tags.get("genzoo.metric_value")
    if value is None or not math.isfinite(value):
        return False, f"no {metric} measured; champion v{champion.version} kept"
    if best is None:
        return True, f"champion v{champion.version} has no recorded {metric}"
    if value < float(best):
        return True, f"{metric} {value:.4f} < {float(best):.4f} of champion v{champion.version}"
    return False, f"{metric} {value:.4f} does not beat {float(best):.4f} of champion v{champion.version}"


def promote_model(client: MlflowClient, key: str) -> dict:
    metrics = json.loads(repo_path(f"reports/{key}/metrics.json").read_text())
    logged = json.loads(repo_path(f"models/{key}/mlflow.json").read_text())
    name = tracking.registered_name(key)
    metric = metrics["promotion_metric"]
    value = metrics.get(metric) if isinstance(metrics.get(metric), (int, float)) else None
    version, new = registered_version(client, name, logged)
    if new:
        client.set_model_version_tag(name, version.version, "genzoo.metric", metric)
        if value is not None:
            client.set_model_version_tag(name, version.version, "genzoo.metric_value", repr(float(value)))
        version = client.get_model_version(name, version.version)
    champion = current_champion(client, name)
    promote, reason = decide(metric, value, champion, version)
    if promote:
        client.set_registered_model_alias(name, ALIAS, version.version)
    client.set_model_version_tag(name, version.version, "genzoo.promotion",
                                 ("promoted: " if promote else "not promoted: ") + reason)
    champion = current_champion(client, name)
    print(f"[promote] {name} v{version.version}: {'PROMOTED' if promote else 'kept'} ({reason})")
    return {"key": key, "registered_model": name, "version": int(version.version), "new_version": new,
            "promoted": promote, "reason": reason, "champion_version": int(champion.version),
            "metric": metric, "value": value, "metrics": metrics}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value)) if value is not None else "—"


def comparison_page(results: list[dict], card: dict) -> str:
    """An HTML page a person would rather look at than read: samples, curves, figures."""
    # Likelihoods compare only within one pixel format: binary vs. L-level intensities.
    columns = ["pixels", "parameters", "test_nll", "test_bits_per_dim", "test_elbo", "fid", "kid", "precision",
               "recall", "class_coverage"]
    # The three uses: generation (above), density -> anomaly detection, codes -> labels.
    uses = ["anomaly_auroc_ood", "anomaly_auroc_holdout", "linear_probe_accuracy", "knn_accuracy"]
    rows, use_rows, panels = [], [], []
    for r in results:
        m = r["metrics"]
        # A use the model lacks shows the reason recorded in its metrics ("not supported: ...").
        use_rows.append("<tr><td><b>{}</b></td>{}</tr>".format(html.escape(r["key"]), "".join(
            f"<td>{_cell(m.get(c, m.get('anomaly_detection' if 'auroc' in c else 'representation')))}</td>"
            for c in uses)))
        crown = " &#128081;" if r["champion_version"] == r["version"] else ""
        rows.append("<tr><td><b>{}</b>{}</td><td>{}</td><td>v{} ({})</td>{}</tr>".format(
            html.escape(r["key"]), crown, html.escape(m["family"]), r["version"], html.escape(r["reason"]),
            "".join(f"<td>{_cell(m.get(c))}</td>" for c in columns)))
        completion = (f'<figcaption>completions: test image, upper half, three completions</figcaption>'
                      f'<img src="{html.escape(r["key"])}/completions.png" alt="completions">'
                      if repo_path(f"reports/{r['key']}/figures/completions.png").exists() else "")
        completion += "".join(
            f'<figcaption>{caption}</figcaption><img src="{html.escape(r["key"])}/{picture}" alt="{caption}">'
            for picture, caption in LATENT_PICTURES
            if repo_path(f"reports/{r['key']}/figures/{picture}").exists())
        panels.append(f"""<figure><figcaption><b>{html.escape(r['key'])}</b> ({html.escape(m['model'])})</figcaption>
<img src="{html.escape(r['key'])}/samples.png" alt="samples of {html.escape(r['key'])}">{completion}
<img src="{html.escape(r['key'])}/curves.png" alt="training curves of {html.escape(r['key'])}"></figure>""")
    reference = results[0]["metrics"] if results else {}
    floor = ", ".join(f"{c} {_cell(reference.get('real_data_' + c))}" for c in ("fid", "precision", "recall")
                      if "real_data_" + c in reference)
    header = "".join(f"<th>{c}</th>" for c in columns)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genzoo comparison</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
figure{{display:inline-block;margin:1em;vertical-align:top}}img{{display:block;max-width:600px;image-rendering:pixelated}}</style>
</head><body><h1>genzoo: model comparison</h1>
<p>Data: {html.escape(card['source'])} {card['image_shape']}, {html.escape(card['binarization'])} binarization;
test NLL in nats per image (lower is better; VAE: importance-weighted estimate; compare
likelihoods only between models of the same pixel format).
Sample metrics use the evaluation classifier's features; held-out real data scores {floor or 'n/a'}.</p>
<table><tr><th>model</th><th>family</th><th>registry</th>{header}</tr>{''.join(rows)}</table>
<h2>Uses: anomaly detection and representations</h2>
<p>Anomaly AUROC of -log p(x): test images against {html.escape(str(card.get('ood')))} (ood) and against
{html.escape('class ' + str(card['holdout_class']) if card.get('holdout_class') is not None
             else 'no held-out class (set data.holdout_class)')} (holdout); 0.5 is chance.
Label accuracy of a linear probe and k-NN on each model's codes, fitted on the training split.</p>
<table><tr><th>model</th>{''.join(f"<th>{c}</th>" for c in uses)}</tr>{''.join(use_rows)}</table>
<h2>Samples and training curves</h2>{''.join(panels)}</body></html>
"""


def main() -> None:
    params = load_params()
    tracking.configure()
    client = MlflowClient()
    results = [promote_model(client, key) for key in params["models"]]
    card = json.loads(repo_path("data/prepared/card.json").read_text())
    with atomic_directory(repo_path("comparison")) as build:
        summary = [{k: v for k, v in r.items() if k != "metrics"} for r in results]
        (build / "promotion.json").write_text(json.dumps(summary, indent=2) + "\n")
        for r in results:
            (build / r["key"]).mkdir()
            for picture in ("figures/samples.png", "figures/completions.png", "curves.png",
                            *(f"figures/{name}" for name, _ in LATENT_PICTURES)):
                source = repo_path(f"reports/{r['key']}/{picture}")
                if source.exists():
                    shutil.copy(source, build / r["key"] / source.name)
        (build / "index.html").write_text(comparison_page(results, card))
    print(f"[promote] comparison report: {repo_path('comparison/index.html')}")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, tracking.TrackingUnavailable) as error:
        sys.exit(f"promote failed: {error}")
