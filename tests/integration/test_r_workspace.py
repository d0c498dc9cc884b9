"""R as a first-class citizen: the example R notebook in a real R workspace, rpy2, R models as pyfunc."""

import json
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "extensions" / "mlopshub-r" / "examples" / "r-quickstart.ipynb"


@pytest.fixture(scope="module")
def rachel(platform):
    """A member of retail-scoring in an R workspace; yields her token."""
    platform.add_user("rachel", "retail-scoring")
    platform.start("rachel", "r-cpu")
    yield platform.token_for("rachel")
    platform.stop("rachel")


def workspace_processes(platform, name):
    """Processes still running from ``name``'s workspace (their command line names the user's home)."""
    import psutil

    home = str(platform.data_dir / "homes" / name)
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(home in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_stopping_a_workspace_stops_its_kernels(platform, tmp_path):
    platform.add_user("ruth", "retail-scoring")
    platform.start("ruth", "r-cpu")
    token = platform.token_for("ruth")
    for kernel, code in (("ir", "invisible(mlopshub:::mlflow_module())"), ("python3", "import mlflow")):
        started = platform.workspace("ruth", "api/kernels", token, "POST", json={"name": kernel})
        assert started.status_code == 201
        platform.run_in_kernel("ruth", token, started.json()["id"], code)
    assert workspace_processes(platform, "ruth")
    platform.stop("ruth")
    assert workspace_processes(platform, "ruth") == []


@pytest.fixture(scope="module")
def r_notebook_run(platform, rachel):
    """Run every code cell of the example notebook in the R kernel, as JupyterLab would."""
    notebook = json.loads(EXAMPLE.read_text())
    kernel = platform.open_notebook("rachel", rachel, "r-quickstart.ipynb", notebook, "ir")
    out = ""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            out = platform.run_in_kernel("rachel", rachel, kernel, cell["source"], timeout=300)
    run_id, model_uri = out.split()
    return run_id, model_uri


def mlflow_api(platform, token, path, **params):
    response = requests.get(
        f"{platform.url}/services/mlflow/api/2.0/mlflow/{path}",
        params=params,
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "X-MLFLOW-WORKSPACE": "retail-scoring"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_r_notebook_logs_params_metrics_artifact_and_model(platform, rachel, r_notebook_run):
    run_id, model_uri = r_notebook_run
    run = mlflow_api(platform, rachel, "runs/get", run_id=run_id)["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert {"family": "binomial", "formula": "default ~ amount"}.items() <= params.items()
    assert set(metrics) == {"aic", "deviance"} and metrics["aic"] > 0
    assert model_uri == f"runs:/{run_id}/model"
    artifacts = {a["path"] for a in mlflow_api(platform, rachel, "artifacts/list", run_id=run_id).get("files", [])}
    assert "coefficients.csv" in artifacts


def test_r_run_carries_the_same_lineage_as_a_python_run(platform, rachel, r_notebook_run):
    run = mlflow_api(platform, rachel, "runs/get", run_id=r_notebook_run[0])["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlopshub.notebook"] == "r-quickstart.ipynb"
    assert tags["mlopshub.profile"] == "r-cpu"
    assert len(tags["mlopshub.git.commit"]) == 40
    assert tags["mlopshub.git.dirty"] == "false"
    assert len(tags["mlopshub.data.loans.csv"]) == 32  # the DVC md5 of the version read


def test_r_model_loads_and_predicts_from_python(platform, rachel, r_notebook_run):
    code = f"""
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({r_notebook_run[1]!r})
print(model.metadata.signature.inputs.input_names())
print(*model.predict(pd.DataFrame({{"amount": [200, 4800]}})).round(4))
"""
    names, predictions = platform.execute("rachel", rachel, code).strip().splitlines()[-2:]
    low, high = map(float, predictions.split())
    assert names == "['amount']"
    assert 0 <= low < 0.5 < high <= 1  # more defaults for larger loans, as the data was made


def test_python_notebook_calls_r_through_rpy2(platform, rachel):
    code = "import rpy2.robjects as ro\nprint(int(ro.r('sum(1:10)')[0]), ro.r('R.version$major')[0])"
    assert platform.execute("rachel", rachel, code).split() == ["55", "4"]


def test_read_dvc_names_the_missing_file(platform, rachel, r_notebook_run):
    with pytest.raises(AssertionError, match=r"read_dvc\('nope.csv'"):
        kernel = platform.workspace("rachel", "api/kernels", rachel, "POST", json={"name": "ir"}).json()["id"]
        platform.run_in_kernel("rachel", rachel, kernel, 'setwd("credit-demo"); mlopshub::read_dvc("nope.csv")')
