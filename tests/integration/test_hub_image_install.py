"""The package installed as the hub image installs it, in a fresh environment, imports every module (issue 16).

images/hub/Dockerfile runs ``pip install "/tmp/mlopshub[mlflow]"``: nothing else. Here a new virtualenv gets
exactly that (a non-editable install of a copy of what the Dockerfile COPYs, dependencies resolved by pip from
the package's own declarations), and a probe run from another folder imports every module of the installed
``mlopshub``. A module that needs a package only the developer's virtualenv has (dvc and pygit2 did) fails here
with the name of the module and the missing import. The one-machine extras (``test``) are not installed: the
hub image does not have them either.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import importlib, json, pkgutil, sys
import mlopshub
failed = {}
found = pkgutil.walk_packages(mlopshub.__path__, "mlopshub.")
names = sorted(m.name for m in found if not m.name.endswith(".__main__"))
for name in names:
    try:
        importlib.import_module(name)
    except BaseException as error:
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps({"file": mlopshub.__file__, "imported": len(names) - len(failed), "failed": failed}))
"""


def test_a_fresh_install_of_the_hub_package_imports_every_module(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "hub", context / "hub", ignore=shutil.ignore_patterns("__pycache__"))
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{context}[mlflow]"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    done = subprocess.run([str(python), "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(env)), result["file"]
    assert result["failed"] == {}, result["failed"]
    assert result["imported"] >= 60, result
