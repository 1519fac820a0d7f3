"""Cached recommendations are exact: the same as a fresh computation after every event, whichever process
applied it, and the cache stays within its bound."""

from __future__ import annotations

import pytest

from recmodels.serving.service import ANSWER_CACHE_ENV, Recommendation, RecommendationService
from tests.serving.conftest import item_raw


def fresh(folder, monkeypatch: pytest.MonkeyPatch) -> RecommendationService:
    monkeypatch.setenv(ANSWER_CACHE_ENV, "0")
    service = RecommendationService(folder)
    monkeypatch.delenv(ANSWER_CACHE_ENV)
    return service


@pytest.mark.parametrize("name", ["recmamba", "sasrec"])
def test_a_cached_answer_is_what_a_fresh_computation_gives_after_any_workers_event(served_folder, monkeypatch, name):
    folder = served_folder(name)
    worker, other_worker, uncached = (
        RecommendationService(folder),
        RecommendationService(folder),
        fresh(folder, monkeypatch),
    )
    for step in range(4):
        for k, exclude_seen in [(5, True), (5, False), (12, True)]:
            first = worker.recommend("user-0", k, exclude_seen)
            assert worker.recommend("user-0", k, exclude_seen) is first  # served from the cache
            assert first == uncached.recommend("user-0", k, exclude_seen)
        writer = other_worker if step % 2 else worker  # the event arrives through either process
        assert writer.post_events([("user-0", item_raw(10 + step), 3_000 + step)]).applied == 1
    for service in (worker, other_worker, uncached):
        service.close()


def test_the_cache_keeps_at_most_its_capacity_dropping_the_oldest(served_folder, monkeypatch):
    monkeypatch.setenv(ANSWER_CACHE_ENV, "2")
    service = RecommendationService(served_folder("gru4rec"))
    answers = {user: service.recommend(user, 3, True) for user in ("user-0", "user-1", "user-2")}
    assert service.recommend("user-2", 3, True) is answers["user-2"]
    assert service.recommend("user-1", 3, True) is answers["user-1"]
    again = service.recommend("user-0", 3, True)  # dropped: computed anew, equal
    assert again is not answers["user-0"] and again == answers["user-0"]
    assert isinstance(again, Recommendation)
    service.close()
