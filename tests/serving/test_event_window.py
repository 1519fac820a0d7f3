"""What no log may hold, refused by the service over real HTTP: user ids with control characters, and events timed
after tomorrow, which /health counts in a store that holds some already and a rebuild leaves out."""

from __future__ import annotations

import time

from pipelines.paths import ProjectPaths
from pipelines.serving.publish import CarryOverReport, publish_version
from recmodels.serving.service import FUTURE_TOLERANCE_MS, RecommendationService, latest_plausible_ms
from recmodels.serving.updates import Event, apply_events
from tests.serving.conftest import NUM_ITEMS, item_raw
from tests.serving.test_http import serve  # noqa: F401 (the fixture)
from tests.serving.test_rebuild_durability import build_version, first_version, raw_histories

DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_an_event_after_tomorrow_is_refused_naming_it_and_nothing_of_the_batch_is_applied(serve):  # noqa: F811
    client, _ = serve("gru4rec")
    year_287000 = 2**53 - 1
    for late in (year_287000, now_ms() + FUTURE_TOLERANCE_MS + 60_000):
        batch = [
            {"user": "ana", "item": item_raw(1), "timestamp": now_ms()},
            {"user": "ana", "item": item_raw(2), "timestamp": late},
        ]
        answer = client.post("/events", json={"events": batch})
        assert answer.status_code == 422
        assert answer.json()["detail"].startswith("events[1].timestamp: ")
        assert client.get("/users/ana/recommendations").json()["fallback"] is True  # nothing was applied
    almost_tomorrow = {"user": "ana", "item": item_raw(2), "timestamp": now_ms() + FUTURE_TOLERANCE_MS - 60_000}
    assert client.post("/events", json={"events": [almost_tomorrow]}).json()["applied"] == 1
    assert client.get("/health").json()["users_in_future"] == 0


def test_a_user_frozen_by_a_future_event_is_reported_and_mended_by_a_rebuild(project_home):
    link, old = first_version(project_home)
    service = RecommendationService(old)
    frozen = latest_plausible_ms() + 365 * DAY_MS
    # what a service before the time window applied: written to the store below the service's check
    apply_events(service.store, service.engine, [Event("user-0", 1, frozen), Event("user-1", 2, 3000)])
    assert service.post_events([("user-0", item_raw(3), now_ms())]).stale == 1  # frozen: every real event is stale
    health = service.health()
    assert (health["status"], health["users_in_future"]) == ("users_in_future", 1)

    new = build_version(project_home, "v2", [item_raw(i) for i in range(1, NUM_ITEMS + 1)], raw_histories())
    report = publish_version(link, new, ProjectPaths.from_env().served_events("handmade"))

    assert report == CarryOverReport(applied=1, future=1)
    mended = RecommendationService(new)
    assert mended.health()["users_in_future"] == 0
    assert mended.post_events([("user-0", item_raw(3), now_ms())]).applied == 1
    service.close()
    mended.close()


def test_a_user_id_with_a_control_character_is_refused_as_the_data_layer_refuses_it(serve):  # noqa: F811
    client, _ = serve("gru4rec")
    batch = [
        {"user": "ana", "item": item_raw(1), "timestamp": 5},
        {"user": "a\rb", "item": item_raw(1), "timestamp": 5},
    ]
    answer = client.post("/events", json={"events": batch})
    assert answer.status_code == 422
    assert answer.json()["detail"] == "events[1].user: contains the control character U+000D, which no log may hold"
    assert client.get("/users/ana/recommendations").json()["fallback"] is True
