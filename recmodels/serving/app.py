"""The HTTP face of the service (FastAPI): recommendations, event batches, health.

The app follows a link to the served folder (``data/serving/<dataset>/<model>``): when the ``user_states``
asset publishes a rebuilt folder (a new champion), the next request switches to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recmodels.serving.service import ServedFolder, UnknownItem

MAX_EVENTS_PER_REQUEST = 10_000


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=256)
    item: str = Field(min_length=1, max_length=256)
    timestamp: int = Field(ge=0, description="milliseconds since the epoch")

    @field_validator("user", "item", mode="before")
    @classmethod
    def _ids_as_text(cls, value: object) -> object:
        """Ids are raw text ids; a JSON integer id means the same text (but not true/false)."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


def field_name(location: tuple) -> str:
    """A validation error's location as a field path: ("body", "events", 3, "item") -> events[3].item."""
    parts = [p for p in location if p not in ("body", "query", "path")]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def create_app(link: Path) -> FastAPI:
    served = ServedFolder(link)
    app = FastAPI(title="recmamba recommendations", version="1")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{field_name(tuple(e['loc']))}: {e['msg']}" for e in error.errors()]
        return JSONResponse(status_code=422, content={"detail": problems[0], "errors": problems})

    @app.get("/health")
    def health() -> dict:
        return served.get().health()

    @app.get("/users/{user}/recommendations")
    def recommendations(user: str, k: Annotated[int, Query(ge=1, le=1000)] = 10, exclude_seen: bool = True) -> dict:
        service = served.get()
        result = service.recommend(user, k, exclude_seen)
        return {
            "user": user,
            "items": result.items,
            "scores": result.scores,
            "fallback": result.fallback,
            "model": service.meta.get("model"),
            "version": service.meta.get("version"),
        }

    @app.post("/events")
    def post_events(body: EventsIn) -> dict:
        try:
            report = served.post_events([(e.user, e.item, e.timestamp) for e in body.events])
        except UnknownItem as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return {"applied": report.applied, "duplicates": report.duplicates, "stale": report.stale,
                "new_users": report.new_users}  # fmt: skip

    return app
