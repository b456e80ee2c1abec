"""Recipes ship with the package and the paths inside a flagfile resolve relative to it, so the
pipeline works from any working directory and from a non-editable install."""
import os
import shutil

import pytest

from conftest import REPO
from slm_tf import recipes
from slm_tf.config import parse_flagfile
from slm_tf.errors import UserError
from slm_tf.pipeline.config import PipelineConfig
from slm_tf.data.config import DataConfig


def _installed_layout(tmp_path):
    """A copy of the recipes where a wheel puts them (site-packages/slm_tf/configs)."""
    dest = tmp_path / "site-packages" / "slm_tf" / "configs"
    shutil.copytree(os.path.join(REPO, "configs"), dest)
    return dest


def test_pipeline_recipe_resolves_from_another_directory(tmp_path, monkeypatch):
    configs = _installed_layout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pipe, data = parse_flagfile((PipelineConfig, DataConfig), str(configs / "quickstart.flags"),
                                ["--output_dir=runs/q"])
    assert pipe.teacher_recipe == str(configs / "quickstart_teacher.flags")
    assert pipe.student_recipe == str(configs / "banking77_student.flags")
    assert pipe.compress_recipe == str(configs / "banking77_compress.flags")
    assert data.data == "banking77" and pipe.prune_epochs == 3


def test_nested_flagfile_resolves_relative_to_the_including_file(tmp_path, monkeypatch):
    configs = _installed_layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    pipe, data = parse_flagfile((PipelineConfig, DataConfig),
                                str(configs / "clinc150_pipeline.flags"), ["--output_dir=o"])
    assert data.data == "clinc150" and pipe.temperature == 2.0  # its own overrides win
    assert pipe.teacher_recipe == str(configs / "banking77_teacher.flags")  # from the included


def test_user_recipe_names_paths_relative_to_itself(tmp_path, monkeypatch):
    mine = tmp_path / "project" / "recipes"
    mine.mkdir(parents=True)
    (mine / "teacher.flags").write_text("--epochs=1\n")
    (mine / "pipe.flags").write_text("# mine\n--teacher_recipe=teacher.flags\n--auto_recipe=false\n"
                                     "--student_recipe=configs/banking77_student.flags\n")
    monkeypatch.chdir(tmp_path)
    from slm_tf.train.config import TrainConfig
    pipe, train = parse_flagfile((PipelineConfig, TrainConfig), "project/recipes/pipe.flags",
                                 ["--output_dir=o"])
    assert train.auto_recipe is False  # a boolean named *_recipe is not a path
    assert pipe.teacher_recipe == str(mine / "teacher.flags")
    # the older configs/<name>.flags spelling still finds the shipped recipe
    assert os.path.samefile(pipe.student_recipe, recipes.recipe_path("banking77_student"))


def test_circular_and_missing_flagfiles_are_user_errors(tmp_path):
    (tmp_path / "a.flags").write_text("--flagfile=b.flags\n")
    (tmp_path / "b.flags").write_text("--flagfile=a.flags\n")
    with pytest.raises(UserError, match="includes itself"):
        recipes.expand_flagfiles(["x", f"--flagfile={tmp_path / 'a.flags'}"])
    with pytest.raises(UserError, match="missing.flags"):
        recipes.expand_flagfiles(["x", "--flagfile=missing.flags"], str(tmp_path))


def test_recipe_by_name_and_package_data_in_setup():
    names = recipes.recipe_names()
    assert {"quickstart", "banking77_pipeline"} <= set(names)
    assert sorted(f[:-6] for f in os.listdir(os.path.join(REPO, "configs"))
                  if f.endswith(".flags")) == names
    assert recipes.recipe_path("configs/quickstart.flags") == recipes.recipe_path("quickstart")
    with pytest.raises(UserError, match="quickstart"):
        recipes.recipe_path("no_such_recipe")
    # setup.py maps configs/ into the package: the wheel carries slm_tf/configs/*.flags.
    import distutils.core  # noqa: F401  (setuptools provides it)
    import setuptools
    captured = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        cwd = os.getcwd()
        os.chdir(REPO)
        exec(compile(open("setup.py").read(), "setup.py", "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(cwd)
        setuptools.setup = real
    assert captured["package_dir"]["slm_tf.configs"] == "configs"
    assert "slm_tf.configs" in captured["packages"]
    assert "*.flags" in captured["package_data"]["slm_tf.configs"]
