"""The catalog: loading, validation messages and resolution (pure, no servers)."""

from pathlib import Path

import pytest
import yaml

from mlopshub import catalog
from mlopshub.catalog import CatalogError, ProfileNotAllowed

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "profiles"


@pytest.fixture(scope="module")
def sample() -> catalog.Catalog:
    return catalog.load(SAMPLE)


def write_catalog(tmp_path: Path, profiles_yaml: str | None = None, teams_yaml: str | None = None) -> Path:
    (tmp_path / "profiles.yaml").write_text(
        profiles_yaml if profiles_yaml is not None else (SAMPLE / "profiles.yaml").read_text()
    )
    (tmp_path / "teams.yaml").write_text(teams_yaml if teams_yaml is not None else (SAMPLE / "teams.yaml").read_text())
    return tmp_path


def edit_sample(tmp_path: Path, file: str, change) -> Path:
    data = {name: yaml.safe_load((SAMPLE / name).read_text()) for name in ("profiles.yaml", "teams.yaml")}
    change(data[file])
    return write_catalog(tmp_path, yaml.safe_dump(data["profiles.yaml"]), yaml.safe_dump(data["teams.yaml"]))


def test_sample_catalog_has_the_four_profiles_and_two_teams(sample):
    assert list(sample.profiles) == ["python-cpu", "python-gpu", "r-cpu", "r-gpu"]
    assert sample.teams["sme-credit"].profiles == ("python-cpu", "python-gpu")
    assert sample.teams["retail-scoring"].profiles == ("python-cpu", "r-cpu", "r-gpu")
    assert {g.name: g.role for g in sample.role_groups.values()} == {
        "model-validators": "model-validator",
        "platform-admins": "platform-admin",
    }


@pytest.mark.parametrize(
    ("file", "change", "where", "expected"),
    [
        (
            "profiles.yaml",
            lambda d: d["profiles"][0]["memory"].update(limit="-1G"),
            "profiles[0].memory.limit",
            "positive size",
        ),
        ("profiles.yaml", lambda d: d["profiles"][0].update(colour="blue"), "profiles[0]", "unknown key 'colour'"),
        ("profiles.yaml", lambda d: d["profiles"][1].update(gpu=-1), "profiles[1].gpu", "whole number of GPUs"),
        (
            "profiles.yaml",
            lambda d: d["profiles"][0]["cpu"].update(limit=0),
            "profiles[0].cpu.limit",
            "positive number of CPUs",
        ),
        (
            "profiles.yaml",
            lambda d: d["profiles"][0].update(kernels=["julia"]),
            "profiles[0].kernels[0]",
            "python3, ir",
        ),
        (
            "profiles.yaml",
            lambda d: d["profiles"][0]["memory"].update(guarantee="8G", limit="4G"),
            "profiles[0].memory.limit",
            "at least the guarantee",
        ),
        (
            "profiles.yaml",
            lambda d: d["profiles"][0]["options"]["size"]["choices"]["large"]["override"]["memory"].update(limit="1G"),
            "profiles[0].options.size.choices.large.override.memory.limit",
            "at least the guarantee",
        ),
        ("profiles.yaml", lambda d: d["profiles"][1].update(slug="python-cpu"), "profiles[1].slug", "unique slug"),
        ("profiles.yaml", lambda d: d["profiles"][0].pop("image"), "profiles[0]", "'image' is required"),
        (
            "teams.yaml",
            lambda d: d["teams"]["sme-credit"]["profiles"].append("julia-cpu"),
            "teams.sme-credit.profiles[2]",
            "unknown profile slug 'julia-cpu'",
        ),
        ("teams.yaml", lambda d: d["teams"].update({"Bad Team": {"profiles": []}}), "teams", "lower-case name"),
        (
            "teams.yaml",
            lambda d: d["role_groups"]["model-validators"].update(role="god"),
            "role_groups.model-validators.role",
            "model-validator, platform-admin",
        ),
        ("teams.yaml", lambda d: d.update(quotas={}), "quotas", "unknown key"),
        (
            "teams.yaml",
            lambda d: d["teams"]["sme-credit"]["release"]["thresholds"].update(f1={"min": 0.5}),
            "teams.sme-credit.release.thresholds",
            "accuracy, auc, log_loss, rmse",
        ),
        (
            "teams.yaml",
            lambda d: d["teams"]["sme-credit"]["release"]["thresholds"].update(auc={"least": 0.5}),
            "teams.sme-credit.release.thresholds.auc",
            "unknown key 'least'",
        ),
        (
            "teams.yaml",
            lambda d: d["role_groups"]["model-validators"]["profiles"].append("julia-cpu"),
            "role_groups.model-validators.profiles[1]",
            "unknown profile slug 'julia-cpu'",
        ),
        (
            "teams.yaml",
            lambda d: d["consumers"].update({"models": {"models": ["credit-default"]}}),
            "consumers.models",
            "other than the platform's own services",
        ),
        (
            "teams.yaml",
            lambda d: d["consumers"]["loan-origination"].update(models=["no spaces"]),
            "consumers.loan-origination.models[0]",
            "a model name",
        ),
        (
            "teams.yaml",
            lambda d: d["teams"]["sme-credit"]["release"]["holdout"].pop("target"),
            "teams.sme-credit.release.holdout",
            "'target' is required",
        ),
    ],
)
def test_invalid_catalog_names_file_key_and_expectation(tmp_path, file, change, where, expected):
    folder = edit_sample(tmp_path, file, change)
    with pytest.raises(CatalogError) as raised:
        catalog.load(folder)
    error = raised.value
    assert error.file == str(folder / file)
    assert error.key == where
    assert expected in error.message
    assert "\n" not in str(error)


def test_team_release_thresholds_and_holdout_are_read():
    release = catalog.load(SAMPLE).teams["sme-credit"].release
    assert release["thresholds"] == {"auc": {"min": 0.75}}
    assert release["holdout"] == {"path": "data/holdout.csv", "target": "default", "rev": "main"}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    folder = write_catalog(tmp_path, teams_yaml="teams:\n  sme-credit: {profiles: [python-cpu\n")
    with pytest.raises(CatalogError) as raised:
        catalog.load(folder)
    assert raised.value.file.endswith("teams.yaml")
    assert raised.value.key.startswith("line ")
    assert "YAML syntax error" in raised.value.message


def test_key_defined_in_two_files_is_refused(tmp_path):
    folder = write_catalog(tmp_path)
    (folder / "more.yaml").write_text("teams: {}\n")
    with pytest.raises(CatalogError, match="already defined in"):
        catalog.load(folder)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="expected a folder"):
        catalog.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("entitled", "slug", "choices", "gpu", "expected"),
    [
        (["python-cpu"], "python-cpu", None, False, {"mem_limit": "4G", "cpu_limit": 2, "kernels": ("python3",)}),
        (
            ["python-cpu"],
            "python-cpu",
            {"size": "large"},
            False,
            {"mem_limit": "16G", "cpu_limit": 4, "mem_guarantee": "8G"},
        ),
        (["r-cpu"], "r-cpu", None, False, {"kernels": ("ir", "python3"), "default_kernel": "ir", "gpu": 0}),
        (["python-gpu"], "python-gpu", None, True, {"gpu": 1, "node_selector": {"mlopshub.io/node-pool": "gpu"}}),
    ],
)
def test_resolve_applies_profile_then_chosen_option(sample, entitled, slug, choices, gpu, expected):
    settings = catalog.resolve(sample, entitled, slug, choices, gpu_available=gpu)
    for key, value in expected.items():
        assert getattr(settings, key) == value


def test_resolve_records_default_choices(sample):
    assert catalog.resolve(sample, ["python-cpu"], "python-cpu").choices == {"size": "small"}


@pytest.mark.parametrize(
    ("entitled", "slug", "gpu", "message"),
    [
        (["python-cpu"], "r-cpu", True, "profile 'r-cpu' is not allowed"),
        (["python-cpu"], "julia", True, "profile 'julia' does not exist"),
        (["python-gpu"], "python-gpu", False, "profile 'python-gpu' needs a GPU"),
    ],
)
def test_resolve_refuses_and_names_the_profile(sample, entitled, slug, gpu, message):
    with pytest.raises(ProfileNotAllowed, match=message):
        catalog.resolve(sample, entitled, slug, gpu_available=gpu)


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"colour": "red"}, "has no option 'colour'"),
        ({"size": "huge"}, "has no choice 'huge'; expected one of: small, large"),
    ],
)
def test_resolve_refuses_unknown_options(sample, choices, message):
    with pytest.raises(ValueError, match=message):
        catalog.resolve(sample, ["python-cpu"], "python-cpu", choices)


def test_gpu_profiles_hidden_without_gpu(sample):
    entitled = list(sample.teams["retail-scoring"].profiles)
    assert [p.slug for p in catalog.allowed_profiles(sample, entitled, gpu_available=False)] == ["python-cpu", "r-cpu"]
    assert [p.slug for p in catalog.allowed_profiles(sample, entitled, gpu_available=True)] == [
        "python-cpu",
        "r-cpu",
        "r-gpu",
    ]


@pytest.mark.parametrize(
    ("text", "size"), [("512M", 512 * 2**20), ("4G", 4 * 2**30), ("1.5G", int(1.5 * 2**30)), ("100", 100)]
)
def test_parse_quantity(text, size):
    assert catalog.parse_quantity(text) == size


@pytest.mark.parametrize("text", ["3K", "512M", "4G", "1.5G", "2T", "0.25T"])
def test_a_size_means_the_bytes_jupyterhub_gives_a_spawner_as_mem_limit(text):
    from jupyterhub.spawner import Spawner

    assert catalog.parse_quantity(text) == Spawner.class_traits()["mem_limit"].validate(None, text)


@pytest.mark.parametrize("text", ["4Gi", "4g", "lots", "", "-1G", "-100", "nanG", "infG", "1e999"])
def test_not_a_size_is_refused_naming_the_value(text):
    with pytest.raises(ValueError, match=f"^not a size: {text!r}$"):
        catalog.parse_quantity(text)


def test_profiles_schema_json_is_the_package_schema():
    assert (SAMPLE / "schema.json").resolve() == catalog.SCHEMA_PATH
