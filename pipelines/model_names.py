"""The trained models as the whole code location names them: which models train, their asset keys, and the
op tag that keeps their steps one at a time. Training defines the assets; reporting and the executor only
need these names, so they import them from here rather than from training's assets."""

MODEL_NAMES = ("recmamba", "sasrec", "gru4rec", "linrec", "hstu", "lrurec")
# Training runs one at a time (see training/definitions.py): cost figures of models sharing two cores mean nothing.
TRAINING_TAG = {"recmamba/cpu": "training"}


def model_asset_name(model: str) -> str:
    return f"model_{model}"


def check_names(values: list[str], allowed: tuple[str, ...], field: str) -> list[str]:
    """``values`` when it is a non-empty list of names from ``allowed``; else a config error naming ``field``."""
    unknown = [value for value in values if value not in allowed]
    if unknown or not values:
        raise ValueError(f"{field} must be a non-empty list of {list(allowed)}; unknown: {unknown}")
    return values
