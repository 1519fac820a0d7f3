"""Bearer tokens: who may change users' states over HTTP, and, when a read token is set, who may read them.

Without them anyone who reaches the port could post events for any user. Writes always need the write token;
reads need the read token only when one is configured, so the hot GET path does no work for it otherwise. A
token is compared in constant time (``hmac.compare_digest`` over bytes): how long a refusal takes tells nothing of
how much of a guess was right. A refusal is a 401 with ``WWW-Authenticate: Bearer realm="recmamba"``, with
``error="invalid_token"`` when a token was sent but is wrong (RFC 6750).

Tokens come from the environment (``RECMAMBA_WRITE_TOKEN``, ``RECMAMBA_READ_TOKEN``; how ``python -m
recmodels.serve`` hands them to its worker processes, never on a command line) or from files. Given none, the
serve command generates a write token into ``<home>/data/serving/.write_token`` (mode 0600), kept across restarts,
for clients on the same machine to read.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import NamedTuple

WRITE_TOKEN_ENV = "RECMAMBA_WRITE_TOKEN"
READ_TOKEN_ENV = "RECMAMBA_READ_TOKEN"
GENERATED_TOKEN_FILE = ".write_token"  # in <home>/data/serving: the write token the serve command made up
CHALLENGE = 'Bearer realm="recmamba"'
B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750's token syntax: sent in a header as it is, no quoting
SECURITY_SCHEMES = {  # the OpenAPI document's: two bearer schemes, so that each route names the token it needs
    "write_token": {
        "type": "http",
        "scheme": "bearer",
        "description": "the write token: RECMAMBA_WRITE_TOKEN or --write-token-file of python -m recmodels.serve,"
        " else the one it generated into <home>/data/serving/.write_token",
    },
    "read_token": {
        "type": "http",
        "scheme": "bearer",
        "description": "the read token, when the service has one: RECMAMBA_READ_TOKEN or --read-token-file",
    },
}
NEEDS_WRITE_TOKEN = {"security": [{"write_token": []}]}
NEEDS_READ_TOKEN = {"security": [{"read_token": []}]}


class Unauthorized(Exception):
    """A request without the route's token. ``message`` names the header; ``headers`` carry the challenge, and
    close the connection: a refused request's body is never read, and a client could go on sending it."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.message = message
        self.headers = {"www-authenticate": challenge, "connection": "close"}


def checked_token(token: str, source: str) -> str:
    """``token`` if a client can send it; an empty one would let any ``Bearer`` header through."""
    if not token:
        raise ValueError(f"{source}: the token is empty; an empty token would admit any request")
    if not B64TOKEN.fullmatch(token):
        raise ValueError(
            f"{source}: the token holds characters a header cannot carry as they are "
            "(allowed: letters, digits, -._~+/ and trailing =)"
        )
    return token


class Bearer:
    """One token, and the check of a request's Authorization header against it."""

    def __init__(self, token: str, name: str) -> None:
        self.expected = checked_token(token, name).encode()
        self.name = name  # "write token" or "read token": what a refusal asks for

    def require(self, authorization: str | None) -> None:
        """Nothing if ``authorization`` is ``Bearer <the token>``; else Unauthorized, saying what was wrong."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            found = "another scheme" if scheme else "missing"
            raise Unauthorized(f"authorization: {found}; send Authorization: Bearer <{self.name}>", CHALLENGE)
        # Starlette decodes header bytes as latin-1: encoding them back gives the bytes the client sent.
        if not hmac.compare_digest(presented.strip(" ").encode("latin-1"), self.expected):
            raise Unauthorized(f"authorization: not the {self.name}", f'{CHALLENGE}, error="invalid_token"')


def read_token_file(path: Path) -> str:
    """The token in ``path``: its text without the trailing newline that editors and ``echo`` add."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the token ({error.strerror})") from None
    return checked_token(text.rstrip("\r\n"), str(path))


class GivenToken(NamedTuple):
    token: str
    source: str  # where it came from, for the log: an environment variable's name or a file's path


def given_token(env_name: str, file: Path | None) -> GivenToken | None:
    """The token given in the environment variable or in the file; None if neither gives one."""
    if env_name in os.environ and file is not None:
        raise ValueError(f"both {env_name} and {file} give a token: unset one")
    if file is not None:
        return GivenToken(read_token_file(file), str(file))
    if env_name in os.environ:
        return GivenToken(checked_token(os.environ[env_name], env_name), env_name)
    return None


def generated_write_token(folder: Path) -> GivenToken:
    """The token in ``folder/.write_token``, made (random, mode 0600) if there is none yet. It is kept across
    restarts, so a client that read it once goes on working."""
    path = folder / GENERATED_TOKEN_FILE
    if not path.exists():
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=GENERATED_TOKEN_FILE, delete=False) as made:
            made.write(secrets.token_urlsafe(32) + "\n")  # the file is made with mode 0600
            made.flush()
            os.fsync(made.fileno())
        try:
            os.link(made.name, path)  # whole or not at all; a serve command starting beside this one may win
        except FileExistsError:
            pass
        finally:
            os.unlink(made.name)
    return GivenToken(read_token_file(path), str(path))
