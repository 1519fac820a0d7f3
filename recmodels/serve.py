"""``python -m recmodels.serve``: serve one model's recommendations over HTTP (uvicorn), 127.0.0.1 by default.

It serves ``<home>/data/serving/<dataset>/<model>``, the folder the ``user_states`` asset publishes (state store,
model files, catalogue), and follows that link when a rebuild moves it.

``--workers N`` runs N uvicorn worker processes on one port, sharing the store (SQLite WAL: readers never wait,
writers take turns). Each worker builds its app from the environment variable ``RECMAMBA_SERVED_LINK``, the
served link, which this command sets; uvicorn's workers need the app as an import string, not an object.

Writes need a bearer token (``recmodels.serving.auth``): ``RECMAMBA_WRITE_TOKEN`` or ``--write-token-file``, else one
generated into ``<home>/data/serving/.write_token`` for clients on this machine; a host other than loopback needs
a token given explicitly. Reads need ``RECMAMBA_READ_TOKEN`` or ``--read-token-file`` when one is given. Workers
inherit the tokens in their environment, never on a command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import stat
import sys
from pathlib import Path

import uvicorn

from recmodels.serving.auth import READ_TOKEN_ENV, WRITE_TOKEN_ENV, GivenToken, generated_write_token, given_token
from recmodels.serving.bundle import SERVING_FOLDER
from recmodels.serving.service import ANSWER_CACHE_ENV, DEFAULT_CACHED_ANSWERS, answer_cache_size
from recmodels.serving.write_lock import DEFAULT_LOCK_TIMEOUT_S, LOCK_TIMEOUT_ENV, lock_timeout_from_environment

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


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``; a host name other than localhost may resolve to any address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def given_tokens(args: argparse.Namespace) -> tuple[GivenToken | None, GivenToken | None]:
    """The write and read tokens given in the environment or in files. A host beyond loopback needs a write token
    given: the generated one is for clients on this machine, and writes open to the network should be meant."""
    try:
        write = given_token(WRITE_TOKEN_ENV, args.write_token_file)
        read = given_token(READ_TOKEN_ENV, args.read_token_file)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if write is None and not is_loopback(args.host):
        raise SystemExit(
            f"error: --host {args.host} is reachable from other machines: give a write token ({WRITE_TOKEN_ENV} or"
            " --write-token-file) to open writes to them; the generated token is for clients on this machine only"
        )
    for path in (args.write_token_file, args.read_token_file):
        if path is not None and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            print(f"warning: other users can read {path}: chmod 600 it unless its folder is private", file=sys.stderr)
    return write, read


def hand_over(write: GivenToken, read: GivenToken | None) -> None:
    """The tokens into the environment that uvicorn's worker processes inherit, and where each came from on stderr
    (never the token itself: logs travel further than the file)."""
    os.environ[WRITE_TOKEN_ENV] = write.token
    print(f"writes need the write token from {write.source} (Authorization: Bearer <token>)", file=sys.stderr)
    if read is None:
        print(f"reads need no token (give one with {READ_TOKEN_ENV} or --read-token-file)", file=sys.stderr)
    else:
        os.environ[READ_TOKEN_ENV] = read.token
        print(f"reads need the read token from {read.source}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--model", default="recmamba", help="recmamba, gru4rec, sasrec, linrec, hstu or lrurec (default: recmamba)"
    )
    parser.add_argument("--dataset", help="dataset to serve (default: the only one served)")
    parser.add_argument("--home", type=Path, help="RECMAMBA_HOME (default: the environment's, else the project)")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes, sharing the store (default: 1)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker; one is fastest under load (default: 1)"
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=lock_timeout_from_environment(),
        help=f"seconds a batch waits for the store's write lock before a 503 (default: {LOCK_TIMEOUT_ENV}, else"
        f" {DEFAULT_LOCK_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--answer-cache",
        type=int,
        default=answer_cache_size(),
        help="recommendations each worker keeps until their user's next event; 0: none"
        f" (default: {ANSWER_CACHE_ENV}, else {DEFAULT_CACHED_ANSWERS:,})",
    )
    parser.add_argument(
        "--write-token-file",
        type=Path,
        help=f"file holding the token POST /events needs (default: {WRITE_TOKEN_ENV}, else one generated"
        " into <home>/data/serving/.write_token)",
    )
    parser.add_argument(
        "--read-token-file", type=Path, help=f"file holding the token reads need (default: {READ_TOKEN_ENV}, else none)"
    )
    args = parser.parse_args(argv)
    home = (args.home or Path(os.environ.get("RECMAMBA_HOME", PROJECT_DIR))).expanduser().resolve()
    if args.workers < 1 or args.threads < 1:
        parser.error(f"--workers and --threads must be at least 1 (got {args.workers} and {args.threads})")
    if not 0 < args.lock_timeout < float("inf"):
        parser.error(f"--lock-timeout must be seconds above 0 (got {args.lock_timeout})")
    if args.answer_cache < 0:
        parser.error(f"--answer-cache must be 0 or more (got {args.answer_cache})")
    write, read = given_tokens(args)
    link = served_link(home, args.model, args.dataset)
    hand_over(write or generated_write_token(home / SERVING_FOLDER), read)
    from recmodels.serving.app import SERVED_LINK_ENV, THREADS_ENV  # after the arguments: --help stays instant

    os.environ[SERVED_LINK_ENV] = str(link)  # worker processes inherit both
    os.environ[THREADS_ENV] = str(args.threads)
    os.environ[LOCK_TIMEOUT_ENV] = str(args.lock_timeout)  # each worker's StateStore reads it
    os.environ[ANSWER_CACHE_ENV] = str(args.answer_cache)  # and each worker's RecommendationService this
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
