"""The HTTP face of the service (FastAPI): recommendations, event batches, health.

The app follows a link to the served folder (``data/serving/<dataset>/<model>``): when the ``user_states``
asset publishes a rebuilt folder (a new champion), the next request switches to it.

FastAPI routes and documents; the hot paths skip its per-request validation and serialization. Event
batches are decoded and checked by msgspec straight from the body bytes, answers are encoded by msgspec, and
the OpenAPI document's schemas are generated from the same msgspec types, so what it describes is what is
enforced. A recommendation (a store read and one product, microseconds) is computed on the event loop; an
event batch (tens of milliseconds) runs in the threadpool, so the loop keeps answering while it does.

Every answer that is not a 200 is a ``Problem``, ``{"detail": "<field>: <what is wrong>", "errors": [...]}``,
with the field named (``body`` for the body as a whole).

Writes need the write token, reads the read token when one is set (``auth``): refused with a 401 Problem
naming ``authorization``, before the body is read.
"""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Annotated

import msgspec
import torch
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from msgspec import UNSET, Meta, UnsetType
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from recmodels.serving.auth import (
    NEEDS_READ_TOKEN,
    NEEDS_WRITE_TOKEN,
    READ_TOKEN_ENV,
    SECURITY_SCHEMES,
    WRITE_TOKEN_ENV,
    Bearer,
    Unauthorized,
)
from recmodels.serving.service import RefusedEvent, ServedFolder
from recmodels.serving.store import StoreRetired
from recmodels.serving.write_lock import StoreBusy

SERVED_LINK_ENV = "RECMAMBA_SERVED_LINK"  # the link app_from_environment serves (set by python -m recmodels.serve)
THREADS_ENV = "RECMAMBA_SERVE_THREADS"  # torch threads per worker process (python -m recmodels.serve --threads)
MAX_EVENTS_PER_REQUEST = 10_000
MAX_ID_CHARS = 256
MAX_TIMESTAMP_MS = 2**53 - 1  # exact in a float64 too, and far from int64 overflow in any sum or difference
NO_NUL = "^[^\\x00]*$"  # NUL cuts text short in SQLite's functions and C tools: never part of an id
SCHEMA_REF = "#/components/schemas/{name}"

# JSON (and JSON Schema) do not tell 7 from 7.0: both are the integer 7, so both are accepted where an integer
# is, and a number with a fraction is not. msgspec decodes 7.0 as a float, hence the integral-float branches.
TextId = Annotated[
    str, Meta(min_length=1, max_length=MAX_ID_CHARS, extra_json_schema={"pattern": NO_NUL}, description="raw id")
]
INTEGER_ID = {"ge": -(2**63), "le": 2**63 - 1, "description": "an id written as a JSON integer: its decimal text"}
Id = TextId | Annotated[int, Meta(**INTEGER_ID)] | Annotated[float, Meta(multiple_of=1, **INTEGER_ID)]
TIMESTAMP = {"ge": 0, "le": MAX_TIMESTAMP_MS, "description": "milliseconds since the epoch"}
TimestampMs = Annotated[int, Meta(**TIMESTAMP)] | Annotated[float, Meta(multiple_of=1, **TIMESTAMP)]


class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):  # no containers inside: nothing to collect
    """One interaction of a user with an item."""

    user: Id
    item: Id
    timestamp: TimestampMs


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Events to apply, in any order; per user they are applied in timestamp order."""

    events: Annotated[list[Event], Meta(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


class RecommendationRequest(msgspec.Struct):
    """The recommendation route's parameters: ``user`` from the path, the others from the query."""

    user: TextId
    k: Annotated[int, Meta(ge=1, le=1000, description="how many items")] = 10
    exclude_seen: Annotated[bool, Meta(description="leave out items the user already had")] = True


class EventsReport(msgspec.Struct):
    """What became of a batch: applied, or skipped as duplicates or stale (older than the user's last event)."""

    applied: int
    duplicates: int
    stale: int
    new_users: int
    hint: str | UnsetType = UNSET  # only when the stale events look like a client's mistake


class Recommendations(msgspec.Struct):
    """The k best items, best first, and their scores; fallback: the user is unknown, these are the most popular."""

    user: str
    items: list[str]
    scores: list[float]
    fallback: bool
    model: str | None
    version: str | None


class Health(msgspec.Struct):  # documents the service's health dict, which is encoded as it is
    """The served model and its store."""

    status: str  # "ok", or "users_in_future": some users hold an event after tomorrow (see users_in_future)
    model: str | None
    version: str | None
    registered_model: str | None
    dataset: str | None
    split_fingerprint: str | None
    built_at: str | None
    users: int
    users_in_future: int  # users frozen by an event timed after tomorrow: re-materialize user_states


class Problem(msgspec.Struct):
    """Why a request was refused: the first problem, and every problem found, each "<field>: <message>"."""

    detail: str
    errors: list[str]


class AnyId(PathConvertor):
    """A path segment holding a raw id, which may contain "/" (sent as %2F) and line breaks."""

    regex = "[\\s\\S]*"


register_url_convertor("id", AnyId())


class RequestProblem(Exception):
    """A request refused with ``status``; the message starts with the field it is about."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# The largest valid compact event (two ids of 256 ASCII characters, the latest timestamp) with room for
# whitespace: a batch of 10,000 such events fits, a bigger body is refused (413) before it is read whole.
LARGEST_EVENT_BYTES = len(msgspec.json.encode(Event("u" * MAX_ID_CHARS, "i" * MAX_ID_CHARS, MAX_TIMESTAMP_MS)))
MAX_BODY_BYTES = MAX_EVENTS_PER_REQUEST * (LARGEST_EVENT_BYTES + 64)
CLOSE = {"connection": "close"}
BATCH_DECODER = msgspec.json.Decoder(EventBatch)
ENCODER = msgspec.json.Encoder()
MSGSPEC_ERROR = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
NAMED_FIELD = re.compile(r"Object (?P<what>contains unknown|missing required) field `(?P<field>.*)`", re.DOTALL)


def json_answer(body: msgspec.Struct | dict, status: int = 200) -> Response:
    return Response(ENCODER.encode(body), status_code=status, media_type="application/json")


def problem_answer(status: int, messages: list[str], headers: dict[str, str] | None = None) -> Response:
    messages = [m if len(m) <= 500 else m[:499] + "…" for m in messages]  # never echo a huge field back
    return Response(ENCODER.encode(Problem(messages[0], messages)), status, headers, "application/json")


def validation_message(error: msgspec.ValidationError) -> str:
    """msgspec's "Expected `int` >= 0 - at `$.events[3].timestamp`" as "events[3].timestamp: expected ..."."""
    parts = MSGSPEC_ERROR.fullmatch(str(error))
    message, path = parts["message"], (parts["path"] or "").lstrip(".")
    named = NAMED_FIELD.fullmatch(message)
    if named:  # msgspec names the object; the answer names the field, and the fields expected there
        holder = "an event has " if path else "a batch has "
        expected = holder + ", ".join((Event if path else EventBatch).__struct_fields__)
        problem = "missing" if named["what"] == "missing required" else "unknown field"
        path = f"{path}.{named['field']}" if path else named["field"]
        message = f"{problem} ({expected})"
    return f"{path or 'body'}: {message[0].lower()}{message[1:]}"


def decode_batch(body: bytes) -> list[tuple[str, str, int]]:
    """The body's events as (user, item, timestamp ms) with text ids, or a RequestProblem naming the field."""
    if not body.strip():
        raise RequestProblem(400, 'body: empty; expected a JSON object {"events": [...]}')
    try:
        batch = BATCH_DECODER.decode(body)
    except msgspec.ValidationError as error:
        raise RequestProblem(422, validation_message(error)) from None
    except msgspec.DecodeError as error:
        raise RequestProblem(400, f"body: not JSON ({error})") from None
    events = [
        (
            e.user if type(e.user) is str else str(int(e.user)),
            e.item if type(e.item) is str else str(int(e.item)),
            int(e.timestamp),
        )
        for e in batch.events
    ]
    if b"\\u0000" in body:  # the only way a NUL gets into a JSON string: look for it only then
        for index, (user, item, _) in enumerate(events):
            for field, text in (("user", user), ("item", item)):
                if "\x00" in text:
                    raise RequestProblem(422, f"events[{index}].{field}: contains a NUL character")
    return events


def recommendation_request(request: Request) -> RecommendationRequest:
    """The path's user and the query's k and exclude_seen, checked as RecommendationRequest says."""
    user = request.path_params["user"]
    try:
        asked = msgspec.convert({**request.query_params, "user": user}, RecommendationRequest, strict=False)
    except msgspec.ValidationError as error:
        raise RequestProblem(422, validation_message(error)) from None
    if "\x00" in user or not user.isascii():
        check_path_user(user, request.scope["raw_path"])
    return asked


def check_path_user(user: str, raw_path: bytes) -> None:
    """422 for a user id no store can hold: a NUL, lone surrogates, or percent-escapes that are not UTF-8
    (which uvicorn decodes to U+FFFD, so the raw path tells)."""
    if "\x00" in user:
        raise RequestProblem(422, "user: contains a NUL character")
    try:
        user.encode()
        if "\ufffd" in user:
            urllib.parse.unquote_to_bytes(raw_path).decode()
    except UnicodeError:
        raise RequestProblem(422, "user: not valid UTF-8 text") from None


async def read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as its declared or received length passes MAX_BODY_BYTES, chunked too;
    the connection is then closed, or a client could go on sending a body no one reads."""
    too_large = RequestProblem(
        413, f"body: larger than {MAX_BODY_BYTES} bytes; send at most 10,000 events a request", headers=CLOSE
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestProblem(400, "body: the client disconnected before sending all of it") from None
    return b"".join(chunks)


def report_answer(served: ServedFolder, events: list[tuple[str, str, int]]) -> EventsReport:
    report = served.post_events(events)
    hint = (
        f"{report.seconds_like} stale events have timestamps that look like seconds since the epoch; send milliseconds"
        if report.seconds_like
        else UNSET
    )
    return EventsReport(report.applied, report.duplicates, report.stale, report.new_users, hint)


def answer_schema(name: str, description: str) -> dict:
    ref = SCHEMA_REF.format(name=name)
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def parameters(struct: type[msgspec.Struct], in_path: set[str]) -> list[dict]:
    """OpenAPI parameters from a Struct's fields: the schema of each is the one msgspec enforces."""
    schema = msgspec.json.schema(struct)["$defs"][struct.__name__]
    required = set(schema.get("required", []))
    where = {name: "path" if name in in_path else "query" for name in schema["properties"]}
    return [
        {"name": name, "in": where[name], "required": name in required, "schema": field}
        for name, field in schema["properties"].items()
    ]


REFUSED = {422: answer_schema("Problem", "a parameter or field is invalid (named in detail)")}
UNAVAILABLE = {503: answer_schema("Problem", "the served folder is being replaced or is missing: retry")}
WRITE_UNAVAILABLE = {
    503: answer_schema(
        "Problem", "the served folder is being replaced or is missing, or the write lock stayed held: retry"
    )
}
UNAUTHORIZED = {
    401: answer_schema("Problem", "the Authorization header lacks the route's bearer token")
    | {"headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "the scheme: Bearer"}}}
}


def add_error_answers(app: FastAPI) -> None:
    """Every refusal as a Problem. An unexpected exception is a bug: answered 500, and raised on to uvicorn,
    which logs its traceback."""

    @app.exception_handler(RequestProblem)
    async def _problem(request: Request, error: RequestProblem) -> Response:
        return problem_answer(error.status, [error.message], error.headers)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, error: Unauthorized) -> Response:
        return problem_answer(401, [error.message], error.headers)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> Response:
        return problem_answer(error.status_code, [f"{request.url.path}: {error.detail}"], error.headers)

    @app.exception_handler(RefusedEvent)
    async def _refused_event(request: Request, error: RefusedEvent) -> Response:
        return problem_answer(422, [str(error)])

    @app.exception_handler(StoreRetired)
    @app.exception_handler(FileNotFoundError)
    async def _unavailable(request: Request, error: Exception) -> Response:
        return problem_answer(503, [f"service: {error}; retry"])

    @app.exception_handler(StoreBusy)
    async def _store_busy(request: Request, error: StoreBusy) -> Response:
        message = f"service: the state store's write lock was held for more than {error.timeout_s:g} s; retry"
        return problem_answer(503, [message], {"retry-after": "1"})

    @app.exception_handler(sqlite3.OperationalError)
    async def _busy(request: Request, error: sqlite3.OperationalError) -> Response:
        """SQLite's lock stayed held past its busy timeout, by a process writing around the store's write lock."""
        if "locked" not in str(error):
            return await _bug(request, error)
        return problem_answer(503, [f"service: the state store is busy ({error}); retry"], {"retry-after": "1"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> Response:
        return problem_answer(500, [f"server: internal error ({type(error).__name__}); see the server log"])


def add_schemas(app: FastAPI) -> None:
    """The OpenAPI document with the msgspec types' schemas, the ones the routes refer to."""
    _, components = msgspec.json.schema_components(
        [EventBatch, EventsReport, Recommendations, Health, Problem], ref_template=SCHEMA_REF
    )

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(components)
            document["components"]["securitySchemes"] = SECURITY_SCHEMES
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def create_app(link: Path, *, write_token: str, read_token: str | None = None) -> FastAPI:
    """The service of the folder ``link`` points to: POST /events needs ``write_token``, the reads need
    ``read_token`` when one is given (an empty one is refused, as it would admit anyone)."""
    served = ServedFolder(link)
    write = Bearer(write_token, "write token")
    read = None if read_token is None else Bearer(read_token, "read token")
    read_refusal, read_security = ({}, {}) if read is None else (UNAUTHORIZED, NEEDS_READ_TOKEN)  # in the document
    app = FastAPI(title="recmamba recommendations", version="1")
    add_error_answers(app)
    add_schemas(app)

    @app.get(
        "/health",
        responses={200: answer_schema("Health", "the served model"), **read_refusal, **UNAVAILABLE},
        openapi_extra=read_security,
    )
    async def health(request: Request) -> Response:
        if read is not None:
            read.require(request.headers.get("authorization"))
        return json_answer(await run_in_threadpool(lambda: served.get().health()))  # counts users: a table scan

    @app.get(
        "/users/{user:id}/recommendations",
        responses={
            200: answer_schema("Recommendations", "the user's top k items"),
            **read_refusal,
            **REFUSED,
            **UNAVAILABLE,
        },
        openapi_extra={"parameters": parameters(RecommendationRequest, in_path={"user"}), **read_security},
    )
    async def recommendations(request: Request) -> Response:
        if read is not None:
            read.require(request.headers.get("authorization"))
        asked = recommendation_request(request)
        service = served.get()
        result = service.recommend(asked.user, asked.k, asked.exclude_seen)
        meta = service.meta
        return json_answer(
            Recommendations(
                asked.user, result.items, result.scores, result.fallback, meta.get("model"), meta.get("version")
            )
        )

    @app.post(
        "/events",
        responses={
            200: answer_schema("EventsReport", "the batch was applied whole (or skipped as duplicates or stale)"),
            400: answer_schema("Problem", "the body is empty or not JSON"),
            413: answer_schema("Problem", f"the body is larger than {MAX_BODY_BYTES} bytes"),
            **UNAUTHORIZED,
            **REFUSED,
            **WRITE_UNAVAILABLE,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(name="EventBatch")}}},
            },
            **NEEDS_WRITE_TOKEN,
        },
    )
    async def post_events(request: Request) -> Response:
        write.require(request.headers.get("authorization"))
        body = await read_body(request)
        return json_answer(await run_in_threadpool(lambda: report_answer(served, decode_batch(body))))

    return app


def app_from_environment() -> FastAPI:
    """The app of the link named by RECMAMBA_SERVED_LINK, with the tokens of RECMAMBA_WRITE_TOKEN and
    RECMAMBA_READ_TOKEN (inherited, never on a command line): what each uvicorn worker process imports and calls."""
    link = os.environ.get(SERVED_LINK_ENV)
    if not link:
        raise RuntimeError(f"{SERVED_LINK_ENV} is not set: name the served folder's link (python -m recmodels.serve)")
    if WRITE_TOKEN_ENV not in os.environ:
        raise RuntimeError(f"{WRITE_TOKEN_ENV} is not set: writes need a token (python -m recmodels.serve)")
    # Each worker scores and steps on its own threads; one is fastest when workers share the cores (a
    # matrix-vector product took 1 ms on 2 threads against 0.2 ms on one with two processes busy).
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    return create_app(Path(link), write_token=os.environ[WRITE_TOKEN_ENV], read_token=os.environ.get(READ_TOKEN_ENV))
