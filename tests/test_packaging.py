"""A built wheel carries what the checkout keeps in top-level folders: tokenizer files, model-card template, configs."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel needs setuptools")
def test_wheel_ships_tokenizers_model_card_and_recipe_configs(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing behind in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "docs", "runs",
                                                                "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("gr_ft-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"gr_ft/shipped/tokenizers/{p.relative_to(REPO / 'tokenizers')}"
               for p in (REPO / "tokenizers").rglob("*") if p.is_file()}
    assert shipped and shipped <= names
    assert "gr_ft/shipped/model_cards/adapter_card.md" in names
    assert "gr_ft/shipped/model_cards/citations.yaml" in names
    assert {"gr_ft/recipes/configs/demo.yaml", "gr_ft/recipes/accelerate/fsdp.yaml"} <= names
    assert not any(name.startswith("tokenizers/") for name in names)  # never shadows the tokenizers library
