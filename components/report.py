"""The comparison page: every model side by side, with the numbers and pictures evaluate made.

What a model shows follows what evaluation recorded for it: a metric column
appears when some model has it, a use the model lacks shows the recorded
reason ("not supported: ..."), and every figure in `reports/<key>/figures/`
is shown, captioned by what it is.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from components.atomic import write_text_atomically

# Known figures, in the order shown after the sample grid: file name -> caption.
CAPTIONS = {
    "samples.png": "samples",
    "class_samples.png": "samples asked for each class: one row per class",
    "completions.png": "completions: what the model is given, then what it makes of it (test image, upper half, "
                       "three completions; puzzle_gan: key patches, generated image, mask, original)",
    "translations.png": "translations: test images of each domain, then per target domain the images translated "
                        "into it and back into their own",
    "reconstructions.png": "reconstructions: test images, then their reconstructions",
    "interpolations.png": "interpolations between two test images' codes",
    "latent_scatter.png": "test codes coloured by label",
}
# The leaderboard's groups, in page order: (title, what its models declare, the columns that matter
# for them, most important first). A model is in the first group it matches: one that translates
# images is judged as image-to-image whatever its family; otherwise its declared `family` decides.
# Likelihoods compare only within one pixel format: binary vs. L-level intensities.
GROUPS = [
    ("image-to-image", {"capability": "translate"},
     ["pixels", "parameters", "translation_fid", "translation_fid_of_identity", "translation_fid_of_real",
      "target_classification_error", "target_classification_error_of_identity",
      "target_classification_error_of_real", "label_preservation", "label_preservation_of_identity",
      "target_accuracy", "reconstruction_error", "cycle_error_x", "cycle_error_y", "known_mapping_error",
      "known_mapping_error_of_identity"]),
    ("explicit likelihood (autoregressive and others)", {"family": "explicit"},
     ["pixels", "parameters", "test_nll", "test_bits_per_dim", "fid", "kid", "precision", "recall",
      "class_coverage"]),
    ("latent variable", {"family": "latent"},
     ["pixels", "parameters", "test_nll", "test_bits_per_dim", "test_elbo", "test_kl", "test_reconstruction",
      "fid", "kid", "precision", "recall", "class_coverage", "linear_probe_accuracy"]),
    ("adversarial", {"family": "adversarial"},
     ["pixels", "parameters", "fid", "kid", "precision", "recall", "class_coverage", "conditional_accuracy",
      "heldout_caption_accuracy", "categorical_code_accuracy", "q_accuracy_on_real", "completion_fid", "mask_iou",
      "patch_l1"]),
]
# A family no group names yet gets a group of its own with these columns.
COLUMNS = ["pixels", "parameters", "test_nll", "test_bits_per_dim", "test_elbo", "fid", "kid", "precision",
           "recall", "class_coverage", "conditional_accuracy", "translation_fid", "label_preservation",
           "target_classification_error", "known_mapping_error", "completion_fid", "mask_iou", "patch_l1"]
# The three uses: generation (above), density -> anomaly detection, codes -> labels; a missing number
# shows the reason recorded under the use's own key.
USES = {"anomaly_auroc_ood": "anomaly_detection", "anomaly_auroc_holdout": "anomaly_detection",
        "linear_probe_accuracy": "representation", "knn_accuracy": "representation"}


# The number a model's versions are ranked by when promoting (lower is better) where its class declares
# none (`promotion_metric`): a likelihood model's test NLL, by family; a model without a likelihood
# (GAN, adversarial autoencoder) is ranked by FID.
FAMILY_PROMOTION_METRIC = {"explicit": "test_nll", "latent": "test_nll", "adversarial": "fid"}


def promotion_metric(model_class) -> str:
    """The evaluation metric promote ranks a model class's versions by: its declared one, else its
    family's (evaluate records it in evaluation.json; promote reads it there)."""
    if model_class.promotion_metric is not None:
        return model_class.promotion_metric
    return FAMILY_PROMOTION_METRIC[model_class.family] if model_class.likelihood else "fid"


# --- what evaluate records: reports/<key>/metrics.json (numbers, what `dvc metrics show` shows) and
# reports/<key>/evaluation.json (what the model is and, under "not_measured", why a figure is missing) --

def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_reason(value) -> bool:
    return isinstance(value, str) and value.startswith(("not supported", "not measured", "not available"))


def write_evaluation(folder: Path, recorded: dict) -> None:
    """Split what evaluation recorded into the numbers and the rest, and write both files."""
    numbers = {k: v for k, v in recorded.items() if is_number(v)}
    described = {k: v for k, v in recorded.items() if not is_number(v) and not is_reason(v)}
    described["not_measured"] = {k: v for k, v in recorded.items() if is_reason(v)}
    write_text_atomically(Path(folder) / "evaluation.json", json.dumps(described, indent=2) + "\n")
    write_text_atomically(Path(folder) / "metrics.json", json.dumps(numbers, indent=2) + "\n")


def read_evaluation(folder: Path) -> dict:
    """Both files as one record (numbers, descriptions, and each reason under its figure's name)."""
    folder = Path(folder)
    described = json.loads((folder / "evaluation.json").read_text()) if (folder / "evaluation.json").exists() else {}
    reasons = described.pop("not_measured", {})
    return {**json.loads((folder / "metrics.json").read_text()), **described, **reasons}


def figures(reports: Path, key: str) -> list[Path]:
    """The model's figures, known ones first in CAPTIONS order, then any others by name."""
    present = {p.name: p for p in sorted((Path(reports) / key / "figures").glob("*.png"))}
    return [present[n] for n in CAPTIONS if n in present] + [p for n, p in present.items() if n not in CAPTIONS]


def caption(name: str) -> str:
    return CAPTIONS.get(name, Path(name).stem.replace("_", " "))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value)) if value is not None else "—"


def _img(key: str, name: str, alt: str) -> str:
    return f'<img src="{html.escape(key)}/{html.escape(name)}" alt="{html.escape(alt)}">'


def group_of(metrics: dict) -> str:
    """The title of the leaderboard group a model's metrics.json puts it in."""
    for title, declared, _ in GROUPS:
        if declared.get("capability") in metrics.get("capabilities", []) or declared.get("family") == metrics["family"]:
            return title
    return metrics["family"]


def leaderboard(results: list[dict]) -> list[tuple[str, list[str], list[dict]]]:
    """(group title, its columns, its models) for every group some model is in, in GROUPS order, then
    any other family by name; a group shows those of its columns (and its promotion metrics) that one
    of its models has."""
    known = {title: columns for title, _, columns in GROUPS}
    members: dict[str, list[dict]] = {}
    for r in results:
        members.setdefault(group_of(r["metrics"]), []).append(r)
    titles = [t for t in known if t in members] + sorted(t for t in members if t not in known)
    groups = []
    for t in titles:
        promoted_on = [r["metrics"]["promotion_metric"] for r in members[t] if "promotion_metric" in r["metrics"]]
        wanted = list(dict.fromkeys([*known.get(t, COLUMNS), *promoted_on]))
        groups.append((t, [c for c in wanted if any(c in r["metrics"] for r in members[t])], members[t]))
    return groups


def registry_cell(r: dict) -> str:
    """The version, and which alias it holds: champion (marked), challenger, or where the champion is."""
    if r["champion_version"] == r["version"]:
        held = '<span class="champion">&#128081; champion</span>'
    else:
        held = f"{html.escape(r['alias'])}; " if r.get("alias") else ""   # promote's proposal: challenger
        held += (f"champion: v{r['champion_version']}" if r["champion_version"] is not None else "no champion")
        held += " (set by a person)" if r.get("champion_set_by") == "person" else ""
    return f"v{r['version']} {held}<br><small>{html.escape(r['reason'])}</small>"


def group_table(title: str, columns: list[str], members: list[dict]) -> str:
    promoted_on = sorted({r["metrics"]["promotion_metric"] for r in members if "promotion_metric" in r["metrics"]})
    rows = "".join("<tr><td><b>{}</b> ({})</td><td>{}</td><td>{}</td>{}</tr>".format(
        html.escape(r["key"]), html.escape(r["metrics"]["model"]),
        html.escape(", ".join(r["metrics"].get("capabilities", []))), registry_cell(r),
        "".join(f"<td>{_cell(r['metrics'].get(c))}</td>" for c in columns)) for r in members)
    return (f"<h3>{html.escape(title)}</h3>"
            + (f"<p>Promoted on {html.escape(', '.join(promoted_on))} (lower is better).</p>" if promoted_on else "")
            + "<table><tr><th>model</th><th>capabilities</th><th>registry</th>"
            + "".join(f"<th>{c}</th>" for c in columns) + f"</tr>{rows}</table>")


def page(results: list[dict], card: dict, reports: Path) -> str:
    """The HTML page. `results`: one entry per model (key, version, champion_version, reason, metrics;
    promote's decisions also say alias and champion_set_by)."""
    groups = leaderboard(results)
    use_rows, panels = [], []
    for r in results:
        m, key = r["metrics"], r["key"]
        use_rows.append("<tr><td><b>{}</b></td>{}</tr>".format(html.escape(key), "".join(
            f"<td>{_cell(m.get(c, m.get(reason)))}</td>" for c, reason in USES.items())))
        pictures = "".join(f"<figcaption>{html.escape(caption(p.name))}</figcaption>{_img(key, p.name, caption(p.name))}"
                           for p in figures(reports, key))
        curves = _img(key, "curves.png", f"training curves of {key}") if (Path(reports) / key / "curves.png").exists() else ""
        panels.append(f"<figure><figcaption><b>{html.escape(key)}</b> ({html.escape(m['model'])})</figcaption>"
                      f"{pictures}{curves}</figure>")
    reference = results[0]["metrics"] if results else {}
    floor = ", ".join(f"{c} {_cell(reference.get('real_data_' + c))}" for c in ("fid", "precision", "recall")
                      if "real_data_" + c in reference)
    conditional = ("<p>conditional_accuracy: the evaluation classifier's accuracy on samples asked for each "
                   "class (chance is 1 / classes).</p>" if any("conditional_accuracy" in c for _, c, _ in groups) else "")
    holdout = ('class ' + str(card['holdout_class']) if card.get('holdout_class') is not None
               else 'no held-out class (set data.holdout_class)')
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genzoo comparison</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
small{{color:#555}}.champion{{font-weight:bold;color:#a60}}h3{{margin-bottom:0.2em}}
figure{{display:inline-block;margin:1em;vertical-align:top}}img{{display:block;max-width:600px;image-rendering:pixelated}}</style>
</head><body><h1>genzoo: model comparison</h1>
<p>Data: {html.escape(str(card['source']))} {card['image_shape']}, {html.escape(str(card['binarization']))} binarization;
test NLL in nats per image (lower is better; VAE: importance-weighted estimate; compare
likelihoods only between models of the same pixel format).
Sample metrics use the evaluation classifier's features; held-out real data scores {floor or 'n/a'}.</p>{conditional}
<h2>Leaderboard by family</h2>{''.join(group_table(*g) for g in groups)}
<h2>Uses: anomaly detection and representations</h2>
<p>Anomaly AUROC of -log p(x): test images against {html.escape(str(card.get('ood')))} (ood) and against
{html.escape(holdout)} (holdout); 0.5 is chance.
Label accuracy of a linear probe and k-NN on each model's codes, fitted on the training split.</p>
<table><tr><th>model</th>{''.join(f"<th>{c}</th>" for c in USES)}</tr>{''.join(use_rows)}</table>
<h2>Pictures and training curves</h2>{''.join(panels)}</body></html>
"""


def write(results: list[dict], card: dict, reports: Path, folder: Path) -> Path:
    """`folder/index.html` with a copy of every picture it shows (`folder/<key>/...`), so the folder
    stands alone; returns the page's path."""
    reports, folder = Path(reports), Path(folder)
    for r in results:
        (folder / r["key"]).mkdir(parents=True, exist_ok=True)
        for picture in [*figures(reports, r["key"]), reports / r["key"] / "curves.png"]:
            if picture.exists():
                shutil.copy(picture, folder / r["key"] / picture.name)
    (folder / "index.html").write_text(page(results, card, reports))
    return folder / "index.html"
