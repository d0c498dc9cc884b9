"""The model digest: what a server loads is what was recorded."""

import os

import pytest

from mlopshub.serving.integrity import IntegrityError, tree_digest, verify_tree


def model(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "sub" / "model.pkl").write_bytes(b"\x00weights")
    return folder


def test_digest_is_stable_and_names_its_algorithm(tmp_path):
    folder = model(tmp_path)
    assert tree_digest(folder) == tree_digest(folder)
    assert tree_digest(folder).startswith("sha256:")


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "sub" / "model.pkl").write_bytes(b"\x00other"),
        lambda f: (f / "extra.py").write_text("x = 1\n"),
        lambda f: (f / "sub" / "model.pkl").rename(f / "sub" / "renamed.pkl"),
        lambda f: (f / "MLmodel").unlink(),
    ],
    ids=["edited", "added", "renamed", "removed"],
)
def test_any_change_to_the_copy_is_refused(tmp_path, change):
    folder = model(tmp_path)
    recorded = tree_digest(folder)
    change(folder)
    with pytest.raises(IntegrityError, match="changed after registration"):
        verify_tree(folder, recorded)


def test_a_symlink_inside_the_model_is_refused_not_followed(tmp_path):
    folder = model(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("token")
    os.symlink(secret, folder / "sub" / "link")
    with pytest.raises(IntegrityError, match="symlink"):
        tree_digest(folder)


def test_a_model_folder_that_is_a_symlink_is_refused(tmp_path):
    folder = model(tmp_path)
    os.symlink(folder, tmp_path / "alias")
    with pytest.raises(IntegrityError, match="not a folder"):
        tree_digest(tmp_path / "alias")
