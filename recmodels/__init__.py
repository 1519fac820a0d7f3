"""Sequential recommenders for lifelong histories (RecMamba, SASRec, GRU4Rec, LinRec, Mamba4Rec, HSTU, LRURec)."""

from recmodels.models import MODELS, SequentialRecommender, build_model

__all__ = ["MODELS", "SequentialRecommender", "build_model"]
