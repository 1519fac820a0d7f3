"""The LFM-1b-shaped benchmark writes LFM-1b's raw layout, which the ``lfm1b`` source and the real data assets
read into a split of the intended shape."""

from __future__ import annotations

import numpy as np

from tests.benchmarks.scripts import load_script

scale = load_script("lfm1b_scale")


def test_the_raw_files_have_lfm1b_layout_and_ingest_into_the_intended_split(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "landing" / "lfm1b"
    shape = scale.write_log(folder, 45_000)
    assert shape["users"] == 5 and abs(shape["events"] - 45_000) < 50
    rows = np.loadtxt(folder / "LFM-1b_LEs_000.txt", dtype=np.int64, delimiter="\t")
    assert rows.shape == (shape["events"], 5)  # user, artist, album, track, timestamp; no header
    user, track, seconds = rows[:, 0], rows[:, 3], rows[:, 4]
    assert np.all(np.diff(user) >= 0) and all(np.all(np.diff(seconds[user == u]) >= 0) for u in np.unique(user))
    assert np.all(rows[:, 1] == (track - 1) // 8 + 1) and len(np.unique(track)) <= shape["tracks"]

    monkeypatch.setenv("RECMAMBA_HOME", str(tmp_path))
    report = scale.step_data(tmp_path, "1GB", targets=50, users=shape["users"])
    split = report["split"]
    assert split["num_users"] == 5 and split["target_protocol"]["targets_per_user"] == 10
    assert 0 < split["num_test_targets"] <= 50 and set(report["steps"]) == {
        "raw_events",
        "events",
        "sequences",
        "splits",
    }
