"""`mlopshub profiles validate`: exit codes and the one-line message."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def mlopshub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlopshub.cli", *args], capture_output=True, text=True, cwd=REPO)


def test_validate_sample_catalog_exits_zero():
    result = mlopshub("profiles", "validate", str(REPO / "profiles"))
    assert result.returncode == 0, result.stderr
    assert "valid (4 profiles, 2 teams, 2 role groups)" in result.stdout


def test_validate_bad_catalog_exits_nonzero_naming_file_and_key(tmp_path):
    (tmp_path / "profiles.yaml").write_text(
        (REPO / "profiles" / "profiles.yaml").read_text().replace("limit: 4G", "limit: -4G", 1)
    )
    (tmp_path / "teams.yaml").write_text((REPO / "profiles" / "teams.yaml").read_text())
    result = mlopshub("profiles", "validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{tmp_path / 'profiles.yaml'}: profiles[0].memory.limit: expected a positive size" in lines[0]
