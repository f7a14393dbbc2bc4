"""The MLflow model of a transferkit run (MLflow's "models from code": this file is logged with it, no pickle).

`mlflow.pyfunc.load_model("runs:/<run id>/model")` loads the run folder logged beside this file with
`transferkit.load_run` and predicts from raw inputs: image paths or texts, given as a list, a numpy
array, a pandas Series, or a DataFrame holding the run's image or text column (or a single column).
`mlflow models serve -m runs:/<run id>/model --env-manager local` serves it; a request such as
`{"inputs": ["great film", "dull"]}` or `{"dataframe_records": [{"text": "great film"}]}` returns
one row per input: the prediction, its probability and one `p_<class>` column per class.
"""

from __future__ import annotations

import warnings

import mlflow
import pandas as pd

import transferkit
from transferkit.errors import DataError
from transferkit.tracking.mlflow import RUN_ARTIFACT


# Defining the class makes MLflow warn that `predict` lacks a type hint; but MLflow converts inputs
# to the hinted type, and predict takes lists, arrays and DataFrames as they come: no hint is right.
# MLflow puts its own "once" filter ahead of any ignore filter, so the warning is recorded and dropped.
with warnings.catch_warnings(record=True):

    class RunModel(mlflow.pyfunc.PythonModel):
        """A transferkit run folder as an MLflow pyfunc model."""

        def load_context(self, context):
            self.run = transferkit.load_run(context.artifacts[RUN_ARTIFACT])
            self.modality = self.run.meta.modality  # reading the meta loads the weights now, not on a request

        def predict(self, context, model_input, params=None):
            rows = self.run.predict(raw_inputs(model_input, self.column()))
            return pd.DataFrame(rows)

        def column(self) -> str:
            """The DataFrame column the run's inputs come in: its `image_column` or `text_column`."""
            config = self.run.config
            return config.text_column if self.modality == "text" else config.image_column


def raw_inputs(model_input, column: str) -> list[str]:
    """Image paths or texts from what a pyfunc caller or `mlflow models serve` hands over.

    Raises:
        DataError: a DataFrame with several columns and none called `column`, or inputs that are not text.
    """
    if isinstance(model_input, pd.DataFrame):
        if column in model_input.columns:
            model_input = model_input[column]
        elif len(model_input.columns) == 1:
            model_input = model_input.iloc[:, 0]
        else:
            raise DataError(f"The model reads column {column!r}; the input has {list(map(str, model_input.columns))}. "
                            f"Pass a DataFrame with a {column!r} column (or a single column).")
    if isinstance(model_input, str):
        values = [model_input]
    elif hasattr(model_input, "tolist"):  # a numpy array (`{"inputs": [...]}` when served) or a Series
        values = model_input.tolist()
    else:
        values = list(model_input)
    odd = [v for v in values if not isinstance(v, str)]
    if odd:
        raise DataError(f"The model takes image paths or texts as strings; got {type(odd[0]).__name__} {odd[0]!r}.")
    return values


mlflow.models.set_model(RunModel())
