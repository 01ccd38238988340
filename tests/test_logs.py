"""core.logs: line format, JSON lines, idempotent setup, and no secret in any output."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from core.errors import ConfigError
from core.logs import MASK, RedactingFilter, is_secret_name, log_event, scrub, setup_logging
from core.pki.tokens import Token, TokenKind, encode

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\w+) (\S+) (.*)")


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def token() -> Token:
    return Token.new(TokenKind.JOIN, "relay.example.com:443", "ab" * 32, "prod")


def capture(level: str = "debug", *, json_mode: bool = False) -> io.StringIO:
    out = io.StringIO()
    setup_logging(level, stream=out, json=json_mode)
    return out


def test_line_format_and_fields() -> None:
    out = capture("info")
    log = logging.getLogger("wicket.relay")
    log_event(log, logging.INFO, "agent connected", cluster="prod", peer="a b", n=3, ok=True)
    log.debug("hidden")
    log.warning("plain %s", "args", extra={"fields": {"empty": "", "eq": "a=b", "none": None}})
    first, second = out.getvalue().splitlines()
    match = LINE.fullmatch(first)
    assert match is not None
    assert match.groups() == (
        "INFO",
        "wicket.relay",
        'agent connected cluster=prod peer="a b" n=3 ok=true',
    )
    assert second.endswith('WARNING wicket.relay plain args empty="" eq="a=b" none=null')


def test_message_control_characters_cannot_forge_lines() -> None:
    out = capture()
    logging.getLogger("wicket.x").info("evil\n2026-01-01T00:00:00.000Z INFO forged")
    assert len(out.getvalue().splitlines()) == 1
    assert "evil\\n2026" in out.getvalue()


def test_json_lines() -> None:
    out = capture(json_mode=True)
    log_event(logging.getLogger("wicket.agent"), logging.ERROR, "dial failed", target="k8s:6443")
    doc = json.loads(out.getvalue())
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "wicket.agent"
    assert doc["msg"] == "dial failed"
    assert doc["fields"] == {"target": "k8s:6443"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["ts"])


def test_setup_is_idempotent_and_replaces_the_handler() -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if type(h).__name__ != "_WicketHandler"]
    first = capture("info")
    second = capture("debug", json_mode=True)
    assert len(root.handlers) == len(others) + 1  # exactly one Wicket handler, whatever ran
    logging.getLogger("wicket.x").debug("once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "once"


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown log level"):
        setup_logging("loud", stream=io.StringIO())


@pytest.mark.parametrize("json_mode", [False, True])
def test_no_token_or_secret_reaches_the_output(token: Token, json_mode: bool) -> None:
    text = encode(token)
    out = capture(json_mode=json_mode)
    log = logging.getLogger("wicket.relay")
    log.info(f"careless f-string {text}")
    log.info("careless args %s", text)
    log_event(log, logging.INFO, "fields", note=f"see {text}", nested={"list": [text]})
    log_event(log, logging.INFO, "by name", secret=token.secret_text, api_key="k1", Password=1)
    log_event(log, logging.INFO, "control", message={"type": "enroll", "secret": "s3"})
    log.info("repr", extra={"fields": {"obj": [object(), Token]}})
    try:
        raise ValueError(f"bad token {text}")
    except ValueError:
        log.exception("failed with %s", text)
    log.info("stack", stack_info=True, extra={"fields": {"t": text}})
    output = out.getvalue()
    for secret in (text, token.secret_text, "k1", "s3", text[20:40]):
        assert secret not in output
    assert "wicket-join-v1.<redacted>" in output
    assert "ValueError: bad token wicket-join-v1.<redacted>" in output
    assert output.count(MASK) >= 4


def test_exception_text_cached_before_the_filter_is_redacted(token: Token) -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, None)
    record.exc_text = f"Traceback...\nRuntimeError: {encode(token)}"
    assert RedactingFilter().filter(record)
    assert record.exc_text is not None
    assert encode(token) not in record.exc_text


def test_broken_format_args_still_log() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "two %s %s", ("one",), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "two %s %s (log formatting failed: TypeError)"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("secret", True),
        ("client_secret", True),
        ("joinToken", True),
        ("Authorization", True),
        ("api_key", True),
        ("apiKey", True),
        ("private-key", True),
        ("passphrase", True),
        ("key", True),
        ("cluster", False),
        ("keepalive", False),
        ("monkey", False),
        ("rtt_ms", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_scrub_copies_and_masks() -> None:
    value = {"a": ("x", 1, None, 2.5), "token": "t", 3: {"password": "p"}, "s": {"z"}}
    assert scrub(value) == {
        "a": ["x", 1, None, 2.5],
        "token": MASK,
        "3": {"password": MASK},
        "s": ["z"],
    }
