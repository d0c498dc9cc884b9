"""Log an RDS model into an existing run as a pyfunc model (called by mlopshub::log_r_model)."""

import argparse
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--folder", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--predict-type", default="response")
    parser.add_argument("--registered-model-name")
    args = parser.parse_args()
    example = pd.read_csv(args.folder / "input_example.csv")
    with mlflow.start_run(run_id=args.run_id):
        info = mlflow.pyfunc.log_model(
            name=args.name,
            python_model=str(Path(__file__).with_name("r_pyfunc.py")),
            artifacts={"r_model": str(args.folder / "model.rds")},
            model_config={"predict_type": args.predict_type},
            input_example=example,
            pip_requirements=[f"mlflow=={version('mlflow')}", f"rpy2=={version('rpy2')}",
                              f"pandas=={version('pandas')}"],
            registered_model_name=args.registered_model_name,
        )
    print(info.model_uri)


if __name__ == "__main__":
    main()
