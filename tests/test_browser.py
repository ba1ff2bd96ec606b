"""What a person sees and does in MLflow's UI, in a real browser: Playwright drives Debian's chromium
against a copy of the tiny pipeline's store served by `mlflow ui` on a free local port. The
registered models list every model with its champion, the experiment's Models tab is a leaderboard,
a version page shows its card and schema, and a person moves `champion` in the alias editor, which
the next `dvc repro` keeps while proposing a better version as `challenger`.

Each page is saved as a screenshot in tests/artifacts/browser/ (printed; gitignored) for a person
to look at."""

import html
import json
import shutil
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect, sync_playwright

from tiny_pipeline import KEYS, client, copy_repository, free_port, run, server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parent / "artifacts" / "browser"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH: install Debian's "
                                 "chromium (`apt-get install chromium`, as .ci/run does) to run the browser test")]
expect.set_options(timeout=120_000)   # the first render of a page on a busy 2-core machine


@pytest.fixture(scope="module")
def repo(tiny_pipeline, tmp_path_factory) -> Path:
    """A copy of the tiny pipeline right after its first `dvc repro` (every model's v1 is champion),
    which the tests that only look share; the one that changes the registry has its own (`own_repo`)."""
    return copy_repository(tiny_pipeline.pristine, tmp_path_factory.mktemp("browser") / "genzoo")


def mlflow_ui(repo: Path):
    port = free_port()
    return server(["mlflow", "ui", "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"], repo, port, "/health", timeout=240,
                  env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})   # no job consumers: 2 cores


@pytest.fixture(scope="module")
def ui(repo):
    with mlflow_ui(repo) as url:
        yield url


@pytest.fixture
def own_repo(tiny_pipeline, tmp_path) -> Path:
    return copy_repository(tiny_pipeline.pristine, tmp_path / "genzoo")


@pytest.fixture(scope="module")
def browser():
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    print(f"\nscreenshots of the MLflow UI: {SHOTS}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def new_context(browser, url: str):
    context = browser.new_context(base_url=url, viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(120_000)
    return context


@pytest.fixture
def page(browser, ui) -> Page:
    context = new_context(browser, ui)
    yield context.new_page()
    context.close()


@pytest.fixture
def own_page(browser, own_repo) -> Page:
    """A page of the MLflow UI over `own_repo`."""
    with mlflow_ui(own_repo) as url:
        context = new_context(browser, url)
        yield context.new_page()
        context.close()


def tidy(page: Page) -> None:
    """Close what a first visit opens over the page (the new registry UI's announcement, the
    assistant's side panel), so the screenshots show the page itself."""
    announcement = page.get_by_role("dialog").filter(has_text="Flexible, governed deployments")
    if announcement.is_visible():
        announcement.get_by_role("button", name="Close").click()
    assistant = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if assistant.is_visible():
        assistant.click()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def text(locator) -> str:
    return " ".join(locator.inner_text().split())


def request_columns(repo: Path, uri: str) -> list[str]:
    """The input names of a registered version's signature, as MLflow reads it."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    try:
        return mlflow.models.get_model_info(uri).signature.inputs.input_names()
    finally:
        mlflow.set_tracking_uri(previous)


def champion(repo: Path, key: str) -> int:
    return int(client(repo).get_model_version_by_alias(f"genzoo-{key}", "champion").version)


def test_the_registered_models_page_lists_every_model_with_its_champion(page, repo):
    page.goto("/#/models")
    for key in KEYS:
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"genzoo-{key}", exact=True))
        expect(row).to_have_count(1)
        assert f"@ champion : Version {champion(repo, key)}" in text(row)
    tidy(page)
    shot(page, "1-registered-models")


def test_the_models_tab_is_a_leaderboard_with_a_metric_value_per_model(page, repo):
    """As the README says: the experiment's Models tab, Columns -> the metrics to compare."""
    experiment = client(repo).get_experiment_by_name("genzoo").experiment_id
    page.goto(f"/#/experiments/{experiment}/models?workflowType=machine_learning")
    page.get_by_role("link", name="nade", exact=True).wait_for()
    tidy(page)
    page.get_by_role("button", name="Columns").click()
    menu = page.get_by_role("menu")

    def checkbox(title: str):
        return menu.locator(".du-bois-light-tree-treenode", has=page.get_by_title(title, exact=True)) \
            .locator(".du-bois-light-tree-checkbox")

    for every in ("Model attributes", "Metrics", "Parameters"):   # all shown at first: clear them
        checkbox(every).click()
    menu.locator(".du-bois-light-tree-treenode", has_text="Dataset: digits-static") \
        .locator(".du-bois-light-tree-switcher").click()
    for metric in ("test_nll", "fid"):
        checkbox(metric).click()
    page.keyboard.press("Escape")
    expect(page.get_by_role("columnheader", name="test_nll", exact=True)).to_be_visible()

    # Every grid cell, by its row and column (the column id of a metric names it and its dataset).
    cells = page.locator("[role=gridcell]").evaluate_all(
        "cells => cells.map(c => [c.closest('[role=row]').getAttribute('row-index'), c.getAttribute('col-id'),"
        " c.innerText])")
    table: dict[str, dict] = {}
    for row, column, value in cells:
        table.setdefault(row, {})[column] = value
    shown = {}
    for row in table.values():
        name = row["name"].split()[-1]   # after the colour chip
        shown[name] = {json.loads(html.unescape(column.removeprefix("metrics.")))["metricKey"]: value
                       for column, value in row.items() if column.startswith("metrics.") and value}
    logged = {m.name: {x.key: x.value for x in m.metrics}
              for m in client(repo).search_logged_models([experiment])}
    assert set(shown) == set(KEYS)
    for key in KEYS:   # each value as MLflow stores it; the GAN has no likelihood, so no test_nll
        wanted = ("fid",) if key == "gan" else ("test_nll", "fid")
        assert {k: float(v) for k, v in shown[key].items()} == {k: logged[key][k] for k in wanted}
    assert float(shown["nade"]["test_nll"]) > 0 and float(shown["gan"]["fid"]) >= 0
    shot(page, "2-models-tab-test_nll-fid")


def test_a_version_page_shows_its_card_and_its_request_schema(page, repo):
    version = client(repo).get_model_version("genzoo-nade", str(champion(repo, "nade")))
    page.goto(f"/#/models/genzoo-nade/versions/{version.version}")
    inputs = page.get_by_text("Inputs (")
    inputs.wait_for()
    tidy(page)
    first_line = version.description.splitlines()[0]
    assert first_line.startswith("nade v1: promoted")
    expect(page.get_by_text(first_line)).to_be_visible()
    nll = float(version.tags["genzoo.metric_value"])
    expect(page.get_by_role("cell", name=f"{nll:.4f}", exact=True)).to_be_visible()   # its metrics table
    names = request_columns(repo, f"models:/genzoo-nade/{version.version}")
    assert {"num_samples", "seed", "0", "63"} <= set(names)   # samples, or log-likelihoods of 8x8 images
    assert text(inputs) == f"Inputs ({len(names)})"
    assert text(page.get_by_text("Outputs (")) == "Outputs (1)"
    expect(page.get_by_role("link", name="train-nade", exact=True)).to_be_visible()   # its source run
    shot(page, "3-version-card")
    inputs.click()
    expect(page.get_by_text("num_samples (optional)", exact=True)).to_be_visible()
    shot(page, "4-version-schema")


def retrain_bernoulli(repo: Path, pseudocount: float) -> list[str]:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["models"]["bernoulli"]["pseudocount"] = pseudocount
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return run(["dvc", "repro"], repo).stdout


def test_a_person_moves_champion_in_the_alias_editor_and_the_next_repro_keeps_it(own_page, own_repo):
    page, repo = own_page, own_repo
    registry = client(repo)
    retrain_bernoulli(repo, 50.0)   # heavy smoothing: a worse version 2, not promoted
    assert registry.get_registered_model("genzoo-bernoulli").aliases == {"champion": 1}
    assert registry.get_model_version("genzoo-bernoulli", "2").tags["genzoo.promotion"].startswith("not promoted")

    # A person prefers version 2 and moves champion there in the UI's alias editor.
    page.goto("/#/models/genzoo-bernoulli/versions/2")
    page.get_by_title("Add aliases").wait_for()
    tidy(page)
    page.get_by_title("Add aliases").click()
    editor = page.get_by_role("dialog").filter(has_text="Add/Edit alias for model version 2")
    editor.get_by_role("combobox").fill("champion")
    editor.get_by_role("combobox").press("Enter")
    expect(editor).to_contain_text('The "champion" alias is also being used on version 1')
    shot(page, "5-alias-editor")
    editor.get_by_role("button", name="Save aliases").click()
    expect(editor).to_be_hidden()
    expect(page.get_by_text("@ champion")).to_be_visible()
    assert registry.get_registered_model("genzoo-bernoulli").aliases == {"champion": 2}

    # The next `dvc repro` after retraining bernoulli: version 3 beats the person's champion, and
    # is only proposed.
    output = retrain_bernoulli(repo, 2.0)
    assert "genzoo-bernoulli v3: CHALLENGER" in output
    model = registry.get_registered_model("genzoo-bernoulli")
    assert model.aliases == {"champion": 2, "challenger": 3}
    assert model.tags["genzoo.champion_set_by"] == "person"
    assert registry.get_model_version("genzoo-bernoulli", "3").tags["genzoo.promotion"].startswith(
        "proposed as challenger: test_nll")
    assert all(champion(repo, key) == 1 for key in KEYS if key != "bernoulli")

    page.goto("/#/models/genzoo-bernoulli")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Version 3", exact=True))
    expect(row).to_contain_text("@ challenger")
    expect(page.get_by_role("row").filter(has=page.get_by_role("link", name="Version 2", exact=True))) \
        .to_contain_text("@ champion")
    tidy(page)
    shot(page, "6-person-champion-and-challenger")

    # The offline comparison page says the same, in the explicit-likelihood group.
    page.goto((repo / "comparison/index.html").as_uri())
    expect(page.get_by_role("heading", name="explicit likelihood (autoregressive and others)")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="bernoulli (bernoulli)")).to_contain_text(
        "v3 challenger; champion: v2 (set by a person)")
    shot(page, "7-comparison-page")
