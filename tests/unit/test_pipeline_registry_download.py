"""The pipeline's copy of a model version: the whole tree, and nothing a listing points outside of it."""

from pathlib import Path

import pytest
from mlflow.entities import FileInfo
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

from mlopshub.services.pipeline.registry import _fetch_tree


def model_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    (store / "model" / "code").mkdir(parents=True)
    (store / "model" / "MLmodel").write_text("flavors: {}\n")
    (store / "model" / "code" / "train.py").write_text("print('train')\n")
    return store


def test_the_whole_tree_of_a_model_is_copied(tmp_path):
    destination = tmp_path / "copy"
    destination.mkdir()
    _fetch_tree(LocalArtifactRepository(str(model_store(tmp_path))), "", destination)
    copied = sorted(str(p.relative_to(destination)) for p in destination.rglob("*") if p.is_file())
    assert copied == ["model/MLmodel", "model/code/train.py"]
    assert (destination / "model" / "code" / "train.py").read_text() == "print('train')\n"


class HostileListing(LocalArtifactRepository):
    """MLflow's local repository whose listing adds ``extra`` to the folder ``model``."""

    extra: FileInfo

    def list_artifacts(self, path=None):
        listed = super().list_artifacts(path)
        return [*listed, self.extra] if path == "model" else listed


@pytest.mark.parametrize("listed", ["../../outside.txt", "/tmp/outside.txt", "other/outside.txt", "model/../../x"])
def test_a_listed_path_outside_the_model_folder_is_refused(tmp_path, listed):
    repository = HostileListing(str(model_store(tmp_path)))
    repository.extra = FileInfo(listed, False, 3)
    destination = tmp_path / "copy"
    destination.mkdir()
    with pytest.raises(ValueError, match="not a path inside it"):
        _fetch_tree(repository, "", destination)
    assert not (tmp_path / "outside.txt").exists()
    assert not list(destination.rglob("outside.txt"))


def test_a_folder_listed_inside_itself_is_skipped(tmp_path):
    repository = HostileListing(str(model_store(tmp_path)))
    repository.extra = FileInfo("model", True, None)
    destination = tmp_path / "copy"
    destination.mkdir()
    _fetch_tree(repository, "", destination)
    assert (destination / "model" / "code" / "train.py").is_file()
    assert not (destination / "model" / "model").exists()
