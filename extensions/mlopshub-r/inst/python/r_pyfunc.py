"""An R model as an MLflow pyfunc model (MLflow "models from code").

The R model is an RDS artifact (``r_model``); predictions go through rpy2,
with the model's ``predict_type`` (model config) as predict()'s ``type``.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class RModel(PythonModel):
    """Loads an RDS model and predicts a pandas DataFrame through rpy2."""

    def load_context(self, context):
        import rpy2.robjects as ro

        self._model = ro.r["readRDS"](context.artifacts["r_model"])
        self._type = (context.model_config or {}).get("predict_type", "response")

    def predict(self, context, model_input, params=None):
        import rpy2.robjects as ro
        from rpy2.robjects import pandas2ri
        from rpy2.robjects.conversion import localconverter

        frame = pd.DataFrame(model_input)
        with localconverter(ro.default_converter + pandas2ri.converter):
            newdata = ro.conversion.get_conversion().py2rpy(frame)
        predicted = ro.r["predict"](self._model, newdata=newdata, type=self._type)
        return pd.Series(list(predicted), name="prediction")


mlflow.models.set_model(RModel())
