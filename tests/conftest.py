from __future__ import annotations

from pathlib import Path

import pytest

from compiled_models import dataset, train

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = tuple(spec.name for spec in train.SPECS)


def artifact_dir(name: str) -> Path:
    path = ROOT / "compiled_models" / name
    if not (path / "manifest.json").exists():
        pytest.fail(f"artifact {name} is not built: run `make models`")
    return path


@pytest.fixture(scope="session")
def real_dataset() -> dataset.Dataset:
    return dataset.build()
