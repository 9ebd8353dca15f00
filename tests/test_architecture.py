"""The architecture: what `import filterwatch` costs, the version in one place, small files.
(The import contract itself — layers, no cycles — is checked by `lint-imports` in `make lint`.)"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import filterwatch

SRC = Path(filterwatch.__file__).parent


def test_import_loads_no_framework() -> None:
    code = ("import sys, filterwatch; "
            "print(sorted(m for m in ('lightning', 'tensorboard', 'torchmetrics', 'triton', "
            "'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_lazy_names_resolve() -> None:
    for name in ("FilterWatch", "FilterGate", "FilterMetrics", "watch", "Watcher"):
        assert getattr(filterwatch, name).__name__ == name
    assert set(filterwatch.__all__) <= set(dir(filterwatch)) | set(filterwatch._LAZY)


def test_version_is_declared_once() -> None:
    assert version("filterwatch") == filterwatch.__version__
    project = (SRC.parents[1] / "pyproject.toml").read_text().split("[project]")[1].split("\n[")[0]
    assert "\nversion =" not in project and 'dynamic = ["version"]' in project


def test_few_top_level_modules_and_small_files() -> None:
    top = [p for p in SRC.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())]
    modules = [p.name for p in top if p.suffix == ".py"]
    assert len(modules) <= 10, modules
    too_long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 400}
    assert not too_long
