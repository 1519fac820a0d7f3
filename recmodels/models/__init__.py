"""The sequential recommenders and ``build_model``, the one way the rest of the project makes them."""

from __future__ import annotations

import dataclasses

from recmodels.models.base import SequentialRecommender
from recmodels.models.gru4rec import GRU4Rec, GRU4RecConfig
from recmodels.models.hstu import HSTU, HSTUConfig
from recmodels.models.linrec import LinRec, LinRecConfig
from recmodels.models.lrurec import LRURec, LRURecConfig
from recmodels.models.mamba4rec import Mamba4Rec, Mamba4RecConfig
from recmodels.models.recmamba import RecMamba, RecMambaConfig
from recmodels.models.sasrec import SASRec, SASRecConfig

MODELS: dict[str, tuple[type[SequentialRecommender], type]] = {
    "recmamba": (RecMamba, RecMambaConfig),
    "sasrec": (SASRec, SASRecConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "linrec": (LinRec, LinRecConfig),
    "mamba4rec": (Mamba4Rec, Mamba4RecConfig),
    "hstu": (HSTU, HSTUConfig),
    "lrurec": (LRURec, LRURecConfig),
}


def build_model(name: str, num_items: int, **overrides) -> SequentialRecommender:
    """A model by name with its default config, any field overridden by keyword (unknown ones rejected)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    model_class, config_class = MODELS[name]
    fields = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{name} has no config field(s) {unknown}; its fields are {sorted(fields)}")
    return model_class(num_items, config_class(**overrides))


__all__ = [
    "HSTU",
    "MODELS",
    "GRU4Rec",
    "LRURec",
    "LinRec",
    "Mamba4Rec",
    "RecMamba",
    "SASRec",
    "SequentialRecommender",
    "build_model",
]
