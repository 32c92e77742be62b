"""Shared set-up of the in-app model-loop tests."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO


@pytest.fixture
def models(window, tmp_path):
    """A copy of the shipped model in a temporary models folder, chosen in the window's
    Model panel: new models are written beside it, never into the repository's."""
    root = tmp_path / "models"
    shutil.copytree(REPO / "model_weights" / "default", root / "default")
    panel = window.model.model_panel
    panel._root = root
    panel.add_folder(str(root / "default"))
    return root
