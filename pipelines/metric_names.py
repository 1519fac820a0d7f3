"""MLflow metric and tag names shared by the training runs and the comparison that reads them back."""

TAG_MODEL = "recmamba.model"
TAG_DATASET = "recmamba.dataset"
TAG_SPLIT = "recmamba.split_fingerprint"
TAG_KIND = "recmamba.run_kind"
TAG_MODEL_URI = "recmamba.model_uri"

KIND_TRAINING = "training"
KIND_COMPARISON = "comparison"

BUCKETS = ("len_0_256", "len_256_1k", "len_1k_2k", "len_2k_plus")
HEADLINE_METRIC = "ndcg_10"


def epoch_metric(name: str) -> str:
    """Logged once per epoch, with the epoch as the step."""
    return f"epoch/{name}"


def final_metric(split: str, name: str, bucket: str | None = None) -> str:
    """Logged once at the end: ``valid`` at the restored best epoch, ``test`` after training."""
    return f"{split}/{bucket}/{name}" if bucket else f"{split}/{name}"


def cost_metric(name: str) -> str:
    return f"cost/{name}"
