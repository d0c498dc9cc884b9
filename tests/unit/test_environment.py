"""environment.yml as install lists, and drift between it and what is installed here."""

from pathlib import Path

from mlopshub import environment

REPO = Path(__file__).resolve().parents[2]


def test_pip_part_is_fully_pinned():
    for requirement in environment.pip_requirements():
        assert "==" in requirement, f"{requirement}: pin an exact version in environment.yml"


def test_r_packages_map_to_debian_packages():
    assert environment.debian_packages() == ["r-base-core", "r-cran-irkernel", "r-cran-reticulate", "r-cran-jsonlite"]


def test_this_environment_matches_the_manifest():
    # `make up` installs from the manifest: any drift here is a missing install step or a stale pin.
    assert [str(d) for d in environment.drift()] == []


def test_drift_lists_each_differing_package(tmp_path):
    manifest = tmp_path / "environment.yml"
    manifest.write_text(
        "dependencies:\n  - r-base=9.9\n  - r-irkernel=1.3\n  - pip:\n"
        "      - pandas==0.0.1\n      - no-such-package-here==1.0\n"
    )
    versions = {None: "4.2.2", "IRkernel": "1.3.2"}
    found = {d.package: str(d) for d in environment.drift(manifest, r_version=versions.get)}
    assert set(found) == {"r-base", "pandas", "no-such-package-here"}
    assert found["r-base"] == "r-base: manifest pins 9.9, installed 4.2.2"
    assert found["no-such-package-here"] == "no-such-package-here: manifest pins 1.0, installed nothing"
