"""MLflow metric, param and tag names shared by the training runs and the comparison that reads them back."""

from collections.abc import Iterable

TAG_MODEL = "recmamba.model"
TAG_DATASET = "recmamba.dataset"
TAG_SPLIT = "recmamba.split_fingerprint"
TAG_KIND = "recmamba.run_kind"
TAG_MODEL_URI = "recmamba.model_uri"
TAG_CONVERGENCE = "recmamba.convergence"  # the one-line verdict, e.g. "not converged: best epoch is the last ..."

# Params the comparison reads back from each training run: what the model had to learn with. Models that differ
# in any of them are flagged, as their ranking may then reflect the budgets rather than the architectures.
PARAM_WARM_START = "warm_start"  # COLD_START, or the registered version the weights started from ("<name> v3")
COLD_START = "none"
BUDGET_PARAMS = {"train.epochs": "epochs", "train.patience": "patience", "model.max_len": "max_len",
                 "train.max_steps_per_epoch": "steps per epoch", "train.min_improvement": "min improvement",
                 PARAM_WARM_START: "warm start"}  # fmt: skip

KIND_TRAINING = "training"  # a model's result: its one run, or the parent of its seeds' runs
KIND_TRAINING_SEED = "training_seed"  # one seed's run, a child of a multi-seed KIND_TRAINING run
KIND_COMPARISON = "comparison"

# Per-target test results (recmodels.evaluation.evaluate.TargetRanks as Parquet, plus a ``seed`` column): every
# KIND_TRAINING run holds its model's (one row per target and seed) and each popularity baseline's.
TARGET_RANKS_ARTIFACT = "per_target/test_ranks.parquet"

HEADLINE_METRIC = "ndcg_10"
BUCKET_PREFIX = (
    "len_"  # history-length buckets: test/len_02048_03072/ndcg_10 (recmodels.evaluation.evaluate.bucket_name)
)
BUCKET_METRICS = ("ndcg_10", "hr_10", "num_targets")  # per bucket: the headline, its hit rate, and the count
METRICS_AT_10 = ("ndcg_10", "hr_10", "mrr_10")  # validation (it only picks the epoch) and baselines


def epoch_metric(name: str) -> str:
    """Logged once per epoch, with the epoch as the step."""
    return f"epoch/{name}"


def final_metric(split: str, name: str, bucket: str | None = None) -> str:
    """Logged once at the end: ``valid`` at the restored best epoch, ``test`` after training."""
    return f"{split}/{bucket}/{name}" if bucket else f"{split}/{name}"


def interval_metric(split: str, name: str, bound: str, bucket: str | None = None) -> str:
    """A bound (``low`` or ``high``) of the 95% user-bootstrap interval of a final metric:
    ``test/ndcg_10_ci_low``, ``test/len_02048_03072/ndcg_10_ci_high``."""
    if bound not in ("low", "high"):
        raise ValueError(f"bound must be 'low' or 'high', got {bound!r}")
    return f"{final_metric(split, name, bucket)}_ci_{bound}"


def seed_std_metric(split: str, name: str) -> str:
    """The standard deviation of a final metric across training seeds: ``test/ndcg_10_seed_std``."""
    return f"{final_metric(split, name)}_seed_std"


def baseline_ranks_artifact(baseline: str) -> str:
    """Where a training run keeps a popularity baseline's per-target test results."""
    return f"per_target/baseline_{baseline}_test_ranks.parquet"


def cost_metric(name: str) -> str:
    return f"cost/{name}"


def baseline_metric(baseline: str, name: str) -> str:
    """A popularity baseline's test metric, logged in every training run so that each stands on its own."""
    return f"baseline/{baseline}/test_{name}"


def buckets_in(metric_keys: Iterable[str]) -> list[str]:
    """The history-length buckets with a test NDCG@10 among ``metric_keys``, shortest first (names sort so)."""
    found = set()
    for key in metric_keys:
        split, bucket, name = ([*str(key).split("/"), "", ""])[:3]
        if split == "test" and bucket.startswith(BUCKET_PREFIX) and name == HEADLINE_METRIC:
            found.add(bucket)
    return sorted(found)
