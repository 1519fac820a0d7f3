"""``python -m recmodels.serve``: serve one model's recommendations over HTTP (uvicorn), 127.0.0.1 by default.

It serves ``<home>/data/serving/<dataset>/<model>``, the folder the ``user_states`` asset publishes (state store,
model files, catalogue), and follows that link when a rebuild moves it.

``--workers N`` runs N uvicorn worker processes on one port, sharing the store (SQLite WAL: readers never wait,
writers take turns). Each worker builds its app from the environment variable ``RECMAMBA_SERVED_LINK``, the
served link, which this command sets; uvicorn's workers need the app as an import string, not an object.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import uvicorn

from recmodels.serving.bundle import SERVING_FOLDER

PROJECT_DIR = Path(__file__).resolve().parents[1]  # RECMAMBA_HOME's default, as in pipelines/paths.py


def served_link(home: Path, model: str, dataset: str | None) -> Path:
    """``<home>/data/serving/<dataset>/<model>``; the dataset may be left out when only one is served."""
    root = home / SERVING_FOLDER
    if dataset is None:
        datasets = (
            sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
        )
        if len(datasets) != 1:
            found = ", ".join(datasets) or "none"
            raise SystemExit(f"{root}: pass --dataset, one of the served datasets (found: {found})")
        dataset = datasets[0]
    link = root / dataset / model
    if not link.exists():
        raise SystemExit(f"{link} does not exist: materialize user_states (e.g. after python -m pipelines.main)")
    return link


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--model", default="recmamba", help="recmamba, gru4rec, sasrec, linrec or hstu (default: recmamba)"
    )
    parser.add_argument("--dataset", help="dataset to serve (default: the only one served)")
    parser.add_argument("--home", type=Path, help="RECMAMBA_HOME (default: the environment's, else the project)")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes, sharing the store (default: 1)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker; one is fastest under load (default: 1)"
    )
    args = parser.parse_args(argv)
    home = (args.home or Path(os.environ.get("RECMAMBA_HOME", PROJECT_DIR))).expanduser().resolve()
    if args.workers < 1 or args.threads < 1:
        parser.error(f"--workers and --threads must be at least 1 (got {args.workers} and {args.threads})")
    link = served_link(home, args.model, args.dataset)
    from recmodels.serving.app import SERVED_LINK_ENV, THREADS_ENV  # after the arguments: --help stays instant

    os.environ[SERVED_LINK_ENV] = str(link)  # worker processes inherit both
    os.environ[THREADS_ENV] = str(args.threads)
    uvicorn.run(
        "recmodels.serving.app:app_from_environment",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        http="httptools" if available("httptools") else "h11",  # the C parser: a fraction of h11's cost
        loop="uvloop" if available("uvloop") else "asyncio",
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
