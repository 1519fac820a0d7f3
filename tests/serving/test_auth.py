"""Where the service's tokens come from, and which ones it refuses to start with (real files and environment)."""

from __future__ import annotations

import stat

import pytest

from recmodels.serve import is_loopback
from recmodels.serving.auth import WRITE_TOKEN_ENV, generated_write_token, given_token, read_token_file


def test_a_token_file_s_trailing_newline_is_not_part_of_the_token(tmp_path):
    (tmp_path / "token").write_text("s3cret-token\n")
    assert read_token_file(tmp_path / "token") == "s3cret-token"


@pytest.mark.parametrize("text", ["", "\n", "\r\n"])
def test_an_empty_token_file_is_refused_because_it_would_admit_anyone(tmp_path, text):
    (tmp_path / "token").write_text(text)
    with pytest.raises(ValueError, match="the token is empty; an empty token would admit any request"):
        read_token_file(tmp_path / "token")


def test_an_empty_token_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv(WRITE_TOKEN_ENV, "")
    with pytest.raises(ValueError, match=f"^{WRITE_TOKEN_ENV}: the token is empty"):
        given_token(WRITE_TOKEN_ENV, None)


@pytest.mark.parametrize("token", ["two words", "trailing ", "naïve", 'quo"ted', "a=b"])
def test_a_token_a_header_cannot_carry_as_it_is_is_refused(tmp_path, token):
    (tmp_path / "token").write_text(token)
    with pytest.raises(ValueError, match="characters a header cannot carry"):
        read_token_file(tmp_path / "token")


def test_a_missing_token_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"^{tmp_path / 'absent'}: cannot read the token"):
        read_token_file(tmp_path / "absent")


def test_a_token_given_both_in_the_environment_and_in_a_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("from-the-file")
    monkeypatch.setenv(WRITE_TOKEN_ENV, "from-the-environment")
    with pytest.raises(ValueError, match=f"both {WRITE_TOKEN_ENV} and .* give a token: unset one"):
        given_token(WRITE_TOKEN_ENV, tmp_path / "token")


def test_no_token_given_is_none_and_either_source_alone_says_where_it_came_from(tmp_path, monkeypatch):
    monkeypatch.delenv(WRITE_TOKEN_ENV, raising=False)
    assert given_token(WRITE_TOKEN_ENV, None) is None
    (tmp_path / "token").write_text("from-the-file")
    assert given_token(WRITE_TOKEN_ENV, tmp_path / "token") == ("from-the-file", str(tmp_path / "token"))
    monkeypatch.setenv(WRITE_TOKEN_ENV, "from-the-environment")
    assert given_token(WRITE_TOKEN_ENV, None) == ("from-the-environment", WRITE_TOKEN_ENV)


def test_the_generated_token_is_random_private_and_kept(tmp_path):
    home, other_home = tmp_path / "home", tmp_path / "other"
    home.mkdir()
    other_home.mkdir()
    first = generated_write_token(home)
    path = home / ".write_token"
    assert first.source == str(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.token) >= 32 and generated_write_token(home) == first
    assert [p.name for p in home.iterdir()] == [".write_token"]  # no half-written file left beside it
    assert generated_write_token(other_home).token != first.token


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("recmamba.example", False),  # a name may resolve to any interface
    ],
)
def test_only_loopback_interfaces_count_as_this_machine(host, loopback):
    assert is_loopback(host) is loopback
