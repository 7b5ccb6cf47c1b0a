"""Endings: a close (code, reason text) and what preceded it, classified into a reason that says
whether retrying can help, what a user can do about a fatal one, and one line to log."""

from __future__ import annotations

import pytest

from piagent.protocol.endings import EndReason, classify_ending
from piagent.protocol.messages import ClientErrorEvent, ErrorEvent, FlatErrorEvent


@pytest.mark.parametrize(
    ("code", "detail", "error", "expected", "retryable"),
    [
        (1000, "", None, EndReason.SERVER_CLOSED, False),
        (1001, "going away", None, EndReason.CONNECTION_LOST, True),
        (None, "", None, EndReason.CONNECTION_LOST, True),
        (1006, "", None, EndReason.CONNECTION_LOST, True),
        (1002, "", None, EndReason.PROTOCOL_ERROR, True),
        (1002, "This request exceeds your quota limit.", None, EndReason.QUOTA_EXCEEDED, False),
        (1002, "", ErrorEvent(1002, error_type="llm_timeout"), EndReason.TIMEOUT, True),
        (
            1002,
            "",
            ErrorEvent(1002, error_type="transport_receive_timeout"),
            EndReason.NO_INPUT_TIMEOUT,
            True,
        ),
        (1002, "", ErrorEvent(1002, error_type="safety_violation"), EndReason.PROTOCOL_ERROR, True),
        (
            1008,
            "Override for field 'voice_id' is not allowed by config",
            None,
            EndReason.OVERRIDE_REJECTED,
            False,
        ),
        (
            1008,
            "",
            ErrorEvent(1008, error_type="override_error"),
            EndReason.OVERRIDE_REJECTED,
            False,
        ),
        (
            1008,
            "",
            ErrorEvent(1008, error_type="missing_dynamic_variable"),
            EndReason.MISSING_DYNAMIC_VARIABLE,
            False,
        ),
        (
            1008,
            "Missing dynamic variable user_name",
            None,
            EndReason.MISSING_DYNAMIC_VARIABLE,
            False,
        ),
        (1008, "Agent not found", None, EndReason.AGENT_NOT_FOUND, False),
        (1008, "Invalid agent ID", None, EndReason.AGENT_NOT_FOUND, False),
        (1008, "invalid conversation signature", None, EndReason.AUTH_REJECTED, False),
        (1008, "Authentication failed", None, EndReason.AUTH_REJECTED, False),
        (1008, "", ErrorEvent(1008, reason="Unauthorized"), EndReason.AUTH_REJECTED, False),
        (1008, "", FlatErrorEvent("bad API key"), EndReason.AUTH_REJECTED, False),
        (1008, "", ClientErrorEvent(1008, "x", None), EndReason.INVALID_REQUEST, False),
        (
            1008,
            "",
            ErrorEvent(1008, error_type="invalid_message"),
            EndReason.INVALID_REQUEST,
            False,
        ),
        (1011, "", None, EndReason.SERVER_ERROR, True),
        (
            1011,
            "",
            ErrorEvent(1011, error_type="unknown_websocket_crash"),
            EndReason.SERVER_ERROR,
            True,
        ),
        (3000, "Request error", None, EndReason.REQUEST_ERROR, True),
        (3008, "too many concurrent connections", None, EndReason.QUEUE_TIMED_OUT, True),
        (3008, "", None, EndReason.QUEUE_TIMED_OUT, True),
        (1008, "Too many concurrent conversations", None, EndReason.QUEUE_TIMED_OUT, True),
        (4321, "", None, EndReason.PROTOCOL_ERROR, True),
    ],
)
def test_close_classification(
    code: int | None,
    detail: str,
    error: ErrorEvent | ClientErrorEvent | FlatErrorEvent | None,
    expected: EndReason,
    retryable: bool,
) -> None:
    ending = classify_ending(code, detail, error=error)
    assert ending.reason is expected
    assert ending.retryable is retryable
    assert ending.code == code


def test_hang_up_classification_only_for_clean_closes() -> None:
    assert classify_ending(1000, hung_up=True).reason is EndReason.CLIENT_HANGUP
    assert classify_ending(None, hung_up=True).reason is EndReason.CLIENT_HANGUP
    assert classify_ending(1011, hung_up=True).reason is EndReason.SERVER_ERROR


def test_before_metadata_keeps_specific_reasons() -> None:
    assert classify_ending(1000, before_metadata=True).reason is EndReason.CLOSED_BEFORE_METADATA
    assert (
        classify_ending(
            1008, "Override for field 'x' is not allowed by config", before_metadata=True
        ).reason
        is EndReason.OVERRIDE_REJECTED
    )


def test_fatal_reasons_carry_advice_and_normal_ones_are_not_errors() -> None:
    for reason in EndReason:
        if not reason.retryable and reason.is_error:
            assert reason.advice, reason
    for reason in (EndReason.CLIENT_HANGUP, EndReason.AGENT_ENDED_CALL, EndReason.MAX_DURATION):
        assert not reason.is_error
        assert not reason.retryable
        assert reason.advice == ""


def test_describe_never_needs_the_url() -> None:
    ending = classify_ending(1008, "Agent not found")
    assert ending.describe() == "agent not found, code 1008, 'Agent not found'"
    assert classify_ending(None).describe() == "connection lost"
