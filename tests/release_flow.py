"""What a data scientist does before publishing, as code run in their workspace's kernel.

Shared by the integration and browser tests of the release pipeline: make a
git + DVC project with the team's remote, version training and hold-out data,
push it, and train and log a scikit-learn model in MLflow from that project
(the run then carries its lineage: commit, data versions, project folder);
and :class:`Pipeline`, the release API and the endpoints as one user calls them.
"""

import time

import pandas as pd
import requests

PROJECT = "credit"
#: Two applicants, as a scoring client sends them: one request body per MLflow input format.
ROWS = pd.DataFrame({"amount": [10.0, 90.0], "income": [150.0, 30.0]})
FORMATS = {
    "dataframe_split": {"dataframe_split": ROWS.to_dict(orient="split")},
    "dataframe_records": {"dataframe_records": ROWS.to_dict(orient="records")},
    "instances": {"instances": ROWS.to_dict(orient="records")},
    "inputs": {"inputs": ROWS.to_dict(orient="list")},
}

#: Creates ~/credit: git (branch main) + DVC with the team's remote, data/loans.csv and data/holdout.csv versioned.
MAKE_PROJECT = r"""
import os, subprocess, sys
import numpy as np, pandas as pd
home = os.path.expanduser("~")
root = os.path.join(home, "{project}")
os.makedirs(os.path.join(root, "data"), exist_ok=True)
def sh(*args):
    subprocess.run(list(args), cwd=root, check=True, capture_output=True)
dvc = [sys.executable, "-m", "dvc"]
if not os.path.isdir(os.path.join(root, ".git")):
    sh("git", "init", "-q", "-b", "main")
    sh(*dvc, "init", "-q")
    sh(*dvc, "remote", "add", "-d", "team", os.environ["MLOPSHUB_DVC_REMOTE"])
rng = np.random.default_rng({seed})
def rows(n):
    income = rng.uniform(20, 200, n)
    amount = rng.uniform(1, 100, n)
    default = (amount / income + rng.normal(0, 0.15, n) > 0.5).astype(int)
    return pd.DataFrame({{"amount": amount, "income": income, "default": default}})
rows(600).to_csv(os.path.join(root, "data", "loans.csv"), index=False)
rows(300).to_csv(os.path.join(root, "data", "holdout.csv"), index=False)
sh(*dvc, "add", "-q", "data/loans.csv", "data/holdout.csv")
sh("git", "add", "-A")
sh("git", "commit", "-qm", "data version {seed}")
if {push}:
    sh(*dvc, "push", "-q")
print("project ready")
"""

#: Trains in ~/credit and logs the model with a signature and an input example; prints the run id.
TRAIN = r"""
import os
import mlflow, pandas as pd
from sklearn.linear_model import LogisticRegression
os.chdir(os.path.expanduser("~/{project}"))
frame = pd.read_csv("data/loans.csv")
features = frame[["amount", "income"]]
mlflow.set_experiment("credit-default")
with mlflow.start_run() as run:
    model = LogisticRegression(C={c}).fit(features, frame["default"])
    mlflow.log_param("C", {c})
    mlflow.sklearn.log_model(model, name="model", input_example=features.head(3))
print(run.info.run_id)
"""


def make_project(seed: int = 0, push: bool = True) -> str:
    return MAKE_PROJECT.format(project=PROJECT, seed=seed, push=push)


def train(c: float = 1.0) -> str:
    return TRAIN.format(project=PROJECT, c=c)


#: Release states a publish waits for: a person's decision, or the end.
WAITING = {"awaiting_approval", "gates_failed", "failed", "production", "rejected"}


class Pipeline:
    """The pipeline API as one user calls it."""

    def __init__(self, platform, token: str):
        self.base = f"{platform.url}/services/pipeline/api"
        self.models = f"{platform.url}/services/models"
        self.headers = {"Authorization": f"token {token}"}

    def call(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, f"{self.base}/{path}", json=body, headers=self.headers, timeout=120)

    def publish(self, run_id: str, name: str, kind: str = "online") -> dict:
        body = {"model_uri": f"runs:/{run_id}/model", "name": name, "kind": kind, "description": "credit default"}
        response = self.call("POST", "releases", body)
        assert response.status_code == 201, response.text
        return response.json()["release"]

    def wait(self, release_id: str, states=WAITING, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            release = self.call("GET", f"releases/{release_id}").json()
            if release["state"] in states:
                return release
            time.sleep(0.5)
        raise AssertionError(f"release {release_id} still {release['state']} after {timeout}s: {release}")

    def invoke(self, model: str, stage: str, body: dict) -> requests.Response:
        url = f"{self.models}/{model}/{stage}/invocations"
        return requests.post(url, json=body, headers=self.headers, timeout=60)
