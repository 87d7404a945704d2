"""The input frame of a served scikit-learn pipeline, built from feature arrays or from staged rows.

A pipeline sees one column per configured feature, named like the feature:
numeric and boolean features as float (booleans 0/1, NaN = missing),
categorical features as str (None = missing). The simulator trains and
serves with `model_frame`; retraining and replaying registered versions on
staged logs use `staged_model_frame`, so both feed a pipeline the same frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import batch
from modelwatch.config import ModelConfig


def model_frame(model: ModelConfig, features: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The pipeline's input frame from one array per feature.

    Parameters
    ----------
    model : ModelConfig
        Gives the features, their order and types.
    features : mapping of str to ndarray
        One array per configured feature, all of one length; numbers given as
        objects (e.g. with None for missing) are read as numbers.

    Returns
    -------
    DataFrame
        One column per feature: float for numeric and boolean, object (str or None) for categorical.
    """
    columns: dict[str, Any] = {}
    for feature in model.features:
        values = features[feature.name]
        if feature.type == "categorical":
            columns[feature.name] = pd.Series(values, dtype=object)
        elif values.dtype == object:
            columns[feature.name] = pd.to_numeric(pd.Series(values), errors="coerce").astype(float)
        else:
            columns[feature.name] = values.astype(float)
    return pd.DataFrame(columns)


def staged_model_frame(model: ModelConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's input frame from staged prediction rows.

    Parameters
    ----------
    model : ModelConfig
        Gives the features, their order and types.
    frame : DataFrame
        Staged predictions holding ``feature__<name>`` (`batch.feature_column`)
        for every configured feature, as `StagedBatch.read` returns them:
        categoricals as pandas categoricals or text, booleans as nullable ``boolean``.

    Returns
    -------
    DataFrame
        As `model_frame`, on a fresh range index, one row per row of `frame`.

    Raises
    ------
    ValueError
        `frame` lacks a feature column; the message names the missing ones.
    """
    missing = [batch.feature_column(f.name) for f in model.features if batch.feature_column(f.name) not in frame]
    if missing:
        raise ValueError(f"staged_model_frame: the staged rows lack the feature columns {missing}")
    columns: dict[str, Any] = {}
    for feature in model.features:
        staged = frame[batch.feature_column(feature.name)]
        if feature.type == "categorical":
            # Categoricals and pandas' str dtype both hold NaN for missing; the pipelines were fitted on None.
            text = np.where(staged.isna().to_numpy(), None, staged.to_numpy(dtype=object))
            columns[feature.name] = pd.Series(text, dtype=object)
        else:
            columns[feature.name] = staged.to_numpy(dtype=float, na_value=np.nan)
    return pd.DataFrame(columns)
