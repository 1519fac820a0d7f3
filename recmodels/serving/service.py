"""The recommendation service's logic, apart from HTTP: one served model folder, its store and catalogue.

A known user's recommendation is its stored hidden vector times the item embeddings (no encoding at
request time, whatever the model); an unknown user gets the most trained-on items, flagged as a fallback.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recmodels.serving.bundle import STORE_FILE, Catalogue, load_model
from recmodels.serving.engines import engine_for
from recmodels.serving.store import StateStore, StoreRetired
from recmodels.serving.updates import ApplyReport, EventColumns, apply_events

SEEN_MARGIN = 16  # candidates checked beyond 2k at first, for users who saw many of the best items
ANSWER_CACHE_ENV = "RECMAMBA_ANSWER_CACHE"  # answers kept per worker (python -m recmodels.serve --answer-cache)
DEFAULT_CACHED_ANSWERS = 100_000  # a few hundred bytes each at k = 10
RETIRED_RETRIES = 5  # a retired store means the link already moved: one retry normally suffices
SCORE_BLOCK_ROWS = 1 << 18  # rows of a half-precision item table upcast to float32 at once (64 MB at d 64)
HALF_PRECISION = (torch.bfloat16, torch.float16)
# The data layer's window: no event after tomorrow. A later one would make every real event of its user
# stale from then on (the user's state frozen), and would fail the next ingest of the landing data.
FUTURE_TOLERANCE_MS = 86_400_000
USER_IDS_KEY = "user_ids"  # meta: "integer" when the dataset's source has integer user ids, else "text"
INTEGER_ID = re.compile(r"-?[0-9]{1,19}")
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")  # the data layer refuses ids holding one (a line break, a tab)


def top_items(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first, ties by index (argpartition: ~20 us over 20k items)."""
    top = np.argpartition(scores, len(scores) - k)[len(scores) - k :] if k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))]


@dataclass(frozen=True)
class Recommendation:
    items: list[str]  # raw item ids, best first
    scores: list[float]
    fallback: bool  # True: the user is unknown and these are the most popular items


class RefusedEvent(ValueError):
    """An event that makes its whole batch refused; the message starts with the field, ``events[i].<field>``."""


class UnknownItem(RefusedEvent):
    def __init__(self, index: int, item: str) -> None:
        super().__init__(f"events[{index}].item: unknown item {item!r} (not in the served model's catalogue)")
        self.index, self.item = index, item


class TextUser(RefusedEvent):
    def __init__(self, index: int, user: str) -> None:
        super().__init__(
            f"events[{index}].user: {user!r} is not an integer, and this dataset's user ids are integers"
            " (the data layer could not take the event into the log)"
        )
        self.index, self.user = index, user


class ControlCharacter(RefusedEvent):
    def __init__(self, index: int, user: str) -> None:
        character = CONTROL_CHARACTER.search(user)[0]
        super().__init__(
            f"events[{index}].user: contains the control character U+{ord(character):04X}, which no log may hold"
        )
        self.index, self.user = index, user


class FutureTimestamp(RefusedEvent):
    def __init__(self, index: int, ts: int, latest: int) -> None:
        super().__init__(
            f"events[{index}].timestamp: {ts} ms is after {latest} ms, tomorrow on the server's clock;"
            " send milliseconds since the epoch of events that happened"
        )
        self.index, self.ts = index, ts


def is_integer_id(text: str) -> bool:
    """Whether ``text`` is the decimal text of a 64-bit integer, as the data layer casts ids."""
    return INTEGER_ID.fullmatch(text) is not None and -(2**63) <= int(text) < 2**63


def latest_plausible_ms() -> int:
    """The last millisecond an event may carry: now plus the tolerance (the data layer's rule)."""
    return time.time_ns() // 1_000_000 + FUTURE_TOLERANCE_MS


def answer_cache_size() -> int:
    """Answers kept per worker: ``RECMAMBA_ANSWER_CACHE`` when set (0: none), else 100,000."""
    text = os.environ.get(ANSWER_CACHE_ENV, "")
    if text and not text.isdigit():
        raise ValueError(f"{ANSWER_CACHE_ENV}={text!r}: expected a number of answers, 0 or more")
    return int(text) if text else DEFAULT_CACHED_ANSWERS


class AnswerCache:
    """Answers computed before, by (user, k, exclude_seen), each with the user's applied-event count then.

    An answer is a function of the user's stored state (hidden vector and seen items), which only an applied
    event changes, and every applied event raises the count: an answer held for the count the store shows now
    is exactly the one a new computation would give. A worker that has not seen another worker's write still
    reads the new count from the store, so workers need not tell each other. Bounded: beyond ``capacity``
    answers, the oldest goes.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[tuple[str, int, bool], tuple[int, Recommendation]] = {}

    def get(self, asked: tuple[str, int, bool], events: int) -> Recommendation | None:
        held = self._held.get(asked)
        return held[1] if held is not None and held[0] == events else None

    def put(self, asked: tuple[str, int, bool], events: int, answer: Recommendation) -> None:
        if not self.capacity:
            return
        if len(self._held) >= self.capacity and asked not in self._held:
            del self._held[next(iter(self._held))]  # dicts keep insertion order: the oldest answer
        self._held[asked] = (events, answer)


class RecommendationService:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.model = load_model(self.folder)
        self.engine = engine_for(self.model)
        self.catalogue = Catalogue.read(self.folder)
        self.dense_ids = self.catalogue.dense_ids()
        self.store = StateStore(self.folder / STORE_FILE, self.engine.state_dtype)
        self.meta = self.store.meta()
        vectors = self.model.item_vectors().detach()
        # A half-precision table stays as it is (32 M tracks: 4 GB, not 8) and is upcast a block at a time.
        self.embedding = (vectors if vectors.dtype in HALF_PRECISION else vectors.float()).contiguous()
        self.popular = self.catalogue.popular()
        self.integer_users = self.meta.get(USER_IDS_KEY) == "integer"
        self.answers = AnswerCache(answer_cache_size())

    def health(self) -> dict[str, object]:
        """The served model, its users, and how many of them a past client froze with an event after
        tomorrow (re-materializing user_states mends them: the rebuild leaves such events out)."""
        keys = ("model", "version", "registered_model", "dataset", "split_fingerprint", "built_at")
        in_future = self.store.users_after(latest_plausible_ms())
        status = "ok" if not in_future else "users_in_future"
        meta = {key: self.meta.get(key) for key in keys}
        return {"status": status, **meta, "users": self.store.num_users(), "users_in_future": in_future}

    def recommend(self, user: str, k: int, exclude_seen: bool) -> Recommendation:
        found = self.store.hidden(user)
        if found is None:
            top = self.popular[:k]
            counts = self.catalogue.train_count[top].astype(float)
            return Recommendation([self.catalogue.item_raw[i - 1] for i in top], counts.tolist(), fallback=True)
        slot, events, hidden = found
        asked = (user, k, exclude_seen)
        answer = self.answers.get(asked, events)
        if answer is None:
            scores = self.scores(hidden)
            top = self.top_unseen(slot, scores, k) if exclude_seen else top_items(scores, min(k, len(scores) - 1))
            answer = Recommendation([self.catalogue.item_raw[i - 1] for i in top], scores[top].tolist(), False)
            self.answers.put(asked, events, answer)
        return answer

    def scores(self, hidden: np.ndarray) -> np.ndarray:
        """(num_items + 1,) scores of every item, padding at -inf. torch's matrix-vector product runs on the
        threads the process allows: one per worker is fastest under load (python -m recmodels.serve)."""
        vector = torch.from_numpy(hidden).float()
        if self.embedding.dtype not in HALF_PRECISION:
            scores = torch.mv(self.embedding, vector)
        else:
            scores = torch.empty(len(self.embedding), dtype=torch.float32)
            for start in range(0, len(self.embedding), SCORE_BLOCK_ROWS):
                block = self.embedding[start : start + SCORE_BLOCK_ROWS]
                torch.mv(block.float(), vector, out=scores[start : start + len(block)])
        scores = scores.numpy()
        scores[0] = -np.inf
        return scores

    def top_unseen(self, slot: int, scores: np.ndarray, k: int) -> np.ndarray:
        """The k best items the user has not seen: the best few candidates are checked against the seen table,
        widening until k are left, so the cost follows k, not the length of the user's history."""
        candidates = 2 * k + SEEN_MARGIN
        while True:
            top = top_items(scores, min(candidates, len(scores) - 1))
            seen = self.store.seen_among(slot, top)
            unseen = top[[item not in seen for item in top.tolist()]]
            if len(unseen) >= k or len(top) == len(scores) - 1:
                return unseen[:k]
            candidates *= 4

    def dense_events(self, events: Sequence[tuple[str, str, int]]) -> EventColumns:
        """(user, raw item, ts) as the model's events, or a RefusedEvent naming the first event refused: an
        item the model does not know, a user id the dataset's log cannot hold, or a time after tomorrow."""
        users, raw_items, stamps = zip(*events, strict=True) if events else ((), (), ())
        items = np.array([self.dense_ids.get(raw, 0) for raw in raw_items], np.int64)
        unknown = np.flatnonzero(items == 0)
        if len(unknown):
            raise UnknownItem(int(unknown[0]), raw_items[unknown[0]])
        if CONTROL_CHARACTER.search("".join(users)):
            raise ControlCharacter(*next((i, u) for i, u in enumerate(users) if CONTROL_CHARACTER.search(u)))
        if self.integer_users:
            text = next((i for i, user in enumerate(users) if not is_integer_id(user)), None)
            if text is not None:
                raise TextUser(text, users[text])
        ts = np.array(stamps, np.int64)
        latest = latest_plausible_ms()
        future = np.flatnonzero(ts > latest)
        if len(future):
            raise FutureTimestamp(int(future[0]), int(ts[future[0]]), latest)
        return EventColumns(list(users), items, ts)

    def post_events(self, events: Sequence[tuple[str, str, int]]) -> ApplyReport:
        return apply_events(self.store, self.engine, self.dense_events(events))

    def close(self) -> None:
        self.store.close()


class ServedFolder:
    """The service of the folder a link points at, reopened when the link moves (a rebuild published).

    A rebuild retires the old store once it holds everything the old one applied and the link has moved,
    so a batch that finds its store retired was not applied there: it is posted again to the new folder.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self._lock = threading.Lock()
        self._pointer_seen = self._pointer()
        self._service = RecommendationService(self._target())

    def _target(self) -> Path:
        if not self.link.exists():
            raise FileNotFoundError(f"{self.link} does not exist: materialize the user_states asset first")
        return Path(os.path.realpath(self.link))

    def _pointer(self) -> str:
        """Where the link points now, in one system call (a realpath is ~10): it changes when a rebuild
        publishes; a folder that is no link is its own pointer."""
        try:
            return os.readlink(self.link)
        except OSError:  # no link: a folder (its real path), or nothing (_target says so)
            return str(self._target())

    def get(self) -> RecommendationService:
        pointer = self._pointer()
        if pointer != self._pointer_seen:
            with self._lock:
                target = self._target()
                if target != self._service.folder:
                    self._service = RecommendationService(target)
                self._pointer_seen = pointer
        return self._service

    def post_events(self, events: Sequence[tuple[str, str, int]]) -> ApplyReport:
        """Apply raw events to the served folder's store, following the link if a rebuild retires it."""
        for _ in range(RETIRED_RETRIES):
            try:
                return self.get().post_events(events)
            except StoreRetired:
                continue
        raise StoreRetired(f"{self.link}: the store stayed retired after {RETIRED_RETRIES} tries (link not moved?)")
