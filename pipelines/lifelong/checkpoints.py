"""Where each (model, strategy) of the walk-forward keeps its weights between windows.

Not the serving state store (``recmodels.serving.store``, per-user recurrent states): these are whole models,
one file per window, under ``checkpoints/<dataset>/walk_forward/<model>/<strategy>/<key>.pt`` where the key
is the window's partition key (its first day) or ``initial`` for the frozen strategy's one model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recmodels import SequentialRecommender


class StrategyCheckpoints:
    """Weights of one (model, strategy), one file per window; written to a temporary file and renamed, so a
    failed run never leaves half a checkpoint."""

    def __init__(self, root: Path, model: str, strategy: str) -> None:
        self.folder = root / model / strategy

    def save(self, key: str, model: SequentialRecommender, trained_until_ms: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"state_dict": model.state_dict(), "trained_until_ms": torch.tensor(trained_until_ms)}
        tmp = self.folder / f".{key}.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.folder / f"{key}.pt")

    def load(self, key: str) -> dict | None:
        path = self.folder / f"{key}.pt"
        return torch.load(path, weights_only=True) if path.exists() else None

    def latest_before(self, key: str) -> str | None:
        """The newest window key saved before ``key`` (keys are ISO dates of days, so they sort by time)."""
        keys = sorted(p.stem for p in self.folder.glob("*.pt") if p.stem < key)
        return keys[-1] if keys else None
