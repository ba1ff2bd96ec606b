"""The comparison page: every model side by side, with the numbers and pictures evaluate made.

What a model shows follows what evaluation recorded for it: a metric column
appears when some model has it, a use the model lacks shows the recorded
reason ("not supported: ..."), and every figure in `reports/<key>/figures/`
is shown, captioned by what it is.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path

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
# Likelihoods compare only within one pixel format: binary vs. L-level intensities.
COLUMNS = ["pixels", "parameters", "test_nll", "test_bits_per_dim", "test_elbo", "fid", "kid", "precision",
           "recall", "class_coverage", "conditional_accuracy", "translation_fid", "label_preservation",
           "target_classification_error", "known_mapping_error", "completion_fid", "mask_iou", "patch_l1"]
# The three uses: generation (above), density -> anomaly detection, codes -> labels; a missing number
# shows the reason recorded under the use's own key.
USES = {"anomaly_auroc_ood": "anomaly_detection", "anomaly_auroc_holdout": "anomaly_detection",
        "linear_probe_accuracy": "representation", "knn_accuracy": "representation"}


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


def page(results: list[dict], card: dict, reports: Path) -> str:
    """The HTML page. `results`: one entry per model (key, version, champion_version, reason, metrics)."""
    columns = [c for c in COLUMNS if any(c in r["metrics"] for r in results)]
    rows, use_rows, panels = [], [], []
    for r in results:
        m, key = r["metrics"], r["key"]
        use_rows.append("<tr><td><b>{}</b></td>{}</tr>".format(html.escape(key), "".join(
            f"<td>{_cell(m.get(c, m.get(reason)))}</td>" for c, reason in USES.items())))
        crown = " &#128081;" if r["champion_version"] == r["version"] else ""
        rows.append("<tr><td><b>{}</b>{}</td><td>{}</td><td>{}</td><td>v{} ({})</td>{}</tr>".format(
            html.escape(key), crown, html.escape(m["family"]), html.escape(", ".join(m.get("capabilities", []))),
            r["version"], html.escape(r["reason"]), "".join(f"<td>{_cell(m.get(c))}</td>" for c in columns)))
        pictures = "".join(f"<figcaption>{html.escape(caption(p.name))}</figcaption>{_img(key, p.name, caption(p.name))}"
                           for p in figures(reports, key))
        curves = _img(key, "curves.png", f"training curves of {key}") if (Path(reports) / key / "curves.png").exists() else ""
        panels.append(f"<figure><figcaption><b>{html.escape(key)}</b> ({html.escape(m['model'])})</figcaption>"
                      f"{pictures}{curves}</figure>")
    reference = results[0]["metrics"] if results else {}
    floor = ", ".join(f"{c} {_cell(reference.get('real_data_' + c))}" for c in ("fid", "precision", "recall")
                      if "real_data_" + c in reference)
    conditional = ("<p>conditional_accuracy: the evaluation classifier's accuracy on samples asked for each "
                   "class (chance is 1 / classes).</p>" if "conditional_accuracy" in columns else "")
    header = "".join(f"<th>{c}</th>" for c in columns)
    holdout = ('class ' + str(card['holdout_class']) if card.get('holdout_class') is not None
               else 'no held-out class (set data.holdout_class)')
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>genzoo comparison</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
figure{{display:inline-block;margin:1em;vertical-align:top}}img{{display:block;max-width:600px;image-rendering:pixelated}}</style>
</head><body><h1>genzoo: model comparison</h1>
<p>Data: {html.escape(str(card['source']))} {card['image_shape']}, {html.escape(str(card['binarization']))} binarization;
test NLL in nats per image (lower is better; VAE: importance-weighted estimate; compare
likelihoods only between models of the same pixel format).
Sample metrics use the evaluation classifier's features; held-out real data scores {floor or 'n/a'}.</p>{conditional}
<table><tr><th>model</th><th>family</th><th>capabilities</th><th>registry</th>{header}</tr>{''.join(rows)}</table>
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
