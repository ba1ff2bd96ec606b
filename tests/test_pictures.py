"""Model files describe pictures (components/pictures.py); only components/plots.py draws them."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.pictures import Bars, Grid, LabelledRows, Table
from components.plots import draw, plt

MODELS = Path(__file__).resolve().parents[1] / "components" / "models"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):   # imports inside functions too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_model_file_imports_a_plotting_module():
    offenders = {str(path.relative_to(MODELS)): sorted(m for m in imported_modules(path)
                                                       if m.split(".")[0] == "matplotlib" or m == "components.plots")
                 for path in MODELS.rglob("*.py")}
    assert {path: found for path, found in offenders.items() if found} == {}


def test_building_every_model_loads_no_plotting_library():
    code = ("import sys, components.models as m\n"
            "[m.model_class(name) for name in m.available_models()]\n"
            "print(sorted(k for k in sys.modules if k.startswith('matplotlib') or k == 'components.plots'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=MODELS.parents[1])
    assert result.stdout.strip() == "[]"


def test_each_description_is_drawn_as_its_kind():
    images = np.random.default_rng(0).random((6, 1, 4, 4))
    grid = draw(Grid(images, columns=3))
    # 3 columns and 2 rows of 4x4 images with 1-pixel padding, 4x upscaled
    assert isinstance(grid, Image.Image) and grid.size == ((3 * 5 + 1) * 4, (2 * 5 + 1) * 4)
    rows = draw(LabelledRows(images, ["first", "second"], 3, "title"))
    bars = draw(Bars(np.array([1.0, np.nan]), ["a", "b"], "per class", "FID", reference=np.array([0.5, 0.5])))
    table = draw(Table([[images[0], images[1][:, :2]], [images[2], images[3][:, :2]]], ["whole", "half"]))
    assert [len(figure.axes) for figure in (rows, bars, table)] == [1, 1, 4]
    assert "not measured: b" in bars.axes[0].get_title()
    for figure in (rows, bars, table):
        plt.close(figure)
    with pytest.raises(TypeError, match="not a picture description: ndarray"):
        draw(images)
