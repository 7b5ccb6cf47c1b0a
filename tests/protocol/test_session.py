"""Session: the sans-I/O conversation state machine, driven with wire frames both ways."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from piagent.errors import LocalProtocolError
from piagent.protocol.messages import (
    AgentConfigOverride,
    AgentResponse,
    AgentToolResponse,
    Audio,
    AudioFormat,
    ClientErrorEvent,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationConfigOverride,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    FlatErrorEvent,
    Interruption,
    McpToolApprovalResult,
    Ping,
    QueueState,
    QueueStatus,
    UnknownMessage,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    encode,
)
from piagent.protocol.session import (
    TRANSITIONS,
    ConversationEnded,
    EndReason,
    Session,
    SessionState,
    Trigger,
    state_diagram,
)

METADATA = ConversationInitiationMetadata("conv_1", AudioFormat.PCM_22050, AudioFormat.ULAW_8000)


def frames(session: Session) -> list[dict[str, Any]]:
    return [json.loads(text) for text in session.data_to_send()]


def active_session(**kwargs: Any) -> Session:
    session = Session(**kwargs)
    session.initiate()
    session.receive_text(encode(METADATA))
    session.data_to_send()
    session.events_received()
    return session


def audio(event_id: int, *, is_final: bool = False, data: bytes = b"\x01\x00") -> str:
    return encode(Audio(data, event_id, is_final=is_final))


# --- initiation and metadata -----------------------------------------------------------------


def test_initiation_is_the_first_frame_and_carries_the_overrides() -> None:
    initiation = ConversationInitiationClientData(
        conversation_config_override=ConversationConfigOverride(
            agent=AgentConfigOverride(first_message="Hi!", language="de")
        ),
        dynamic_variables={"user_name": "Ann", "visits": 3},
    )
    session = Session(initiation)
    assert session.state is SessionState.IDLE
    session.initiate()
    assert session.state is SessionState.INITIATING
    assert frames(session) == [
        {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": {"agent": {"first_message": "Hi!", "language": "de"}},
            "dynamic_variables": {"user_name": "Ann", "visits": 3},
        }
    ]
    assert session.data_to_send() == []


def test_default_initiation_sends_only_its_type() -> None:
    session = Session()
    session.initiate()
    assert frames(session) == [{"type": "conversation_initiation_client_data"}]


def test_initiate_twice_is_illegal_and_leaves_state() -> None:
    session = Session()
    session.initiate()
    with pytest.raises(LocalProtocolError, match="cannot initiate in state initiating"):
        session.initiate()
    assert session.state is SessionState.INITIATING


def test_receive_before_initiate_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="cannot receive in state idle"):
        Session().receive_text(encode(METADATA))


def test_metadata_fixes_the_formats_and_activates() -> None:
    session = Session()
    assert (session.input_format, session.output_format, session.conversation_id) == (
        None,
        None,
        None,
    )
    session.initiate()
    session.receive_text(encode(METADATA))
    assert session.state is SessionState.ACTIVE
    assert session.conversation_id == "conv_1"
    assert session.input_format is AudioFormat.ULAW_8000
    assert session.output_format is AudioFormat.PCM_22050
    assert session.events_received() == [METADATA]


def test_second_metadata_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    session = active_session()
    other = ConversationInitiationMetadata("conv_2", AudioFormat.PCM_8000, AudioFormat.PCM_8000)
    session.receive_text(encode(other))
    assert session.events_received() == []
    assert session.conversation_id == "conv_1"
    assert "ignoring conversation metadata" in caplog.text


# --- audio ----------------------------------------------------------------------------------


def test_audio_is_refused_before_metadata() -> None:
    session = Session()
    session.initiate()
    assert not session.can_send_audio
    with pytest.raises(LocalProtocolError, match="cannot send audio in state initiating"):
        session.send_audio(b"\x00\x00")


def test_audio_is_sent_once_active_and_must_hold_whole_samples() -> None:
    session = Session()
    session.initiate()
    session.receive_text(
        encode(ConversationInitiationMetadata("c", AudioFormat.PCM_16000, AudioFormat.PCM_16000))
    )
    session.data_to_send()
    session.send_audio(b"\x01\x02\x03\x04")
    session.send(UserAudioChunk(b"\x05\x06"))
    assert frames(session) == [{"user_audio_chunk": "AQIDBA=="}, {"user_audio_chunk": "BQY="}]
    with pytest.raises(LocalProtocolError, match="splits a pcm_16000 sample"):
        session.send_audio(b"\x01\x02\x03")


def test_an_audio_frame_made_for_writing_at_once_is_checked_and_not_queued() -> None:
    session = Session()
    session.initiate()
    assert session.has_data_to_send  # the initiation
    with pytest.raises(LocalProtocolError, match="cannot send audio in state initiating"):
        session.audio_frame(b"\x00\x00")
    session.receive_text(
        encode(ConversationInitiationMetadata("c", AudioFormat.PCM_16000, AudioFormat.PCM_16000))
    )
    session.data_to_send()
    assert not session.has_data_to_send
    frame = session.audio_frame(b"\x01\x02\x03\x04")
    assert not session.has_data_to_send
    session.send_audio(b"\x01\x02\x03\x04")
    assert session.data_to_send() == [frame.decode()]
    with pytest.raises(LocalProtocolError, match="splits a pcm_16000 sample"):
        session.audio_frame(b"\x01\x02\x03")


def test_ulaw_chunks_may_have_odd_length() -> None:
    session = active_session()
    session.send_audio(b"\xff\xff\xff")
    assert frames(session) == [{"user_audio_chunk": "////"}]


def test_agent_audio_before_metadata_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    session = Session()
    session.initiate()
    session.receive_text(audio(1))
    assert session.events_received() == []
    assert session.stats.early_audio_chunks == 1
    assert "before metadata" in caplog.text


def test_audio_and_text_of_a_turn_pass_in_either_order() -> None:
    session = active_session()
    session.receive_text(audio(5))
    session.receive_text(encode(AgentResponse("hello", 5)))
    session.receive_text(audio(5, is_final=True))
    events = session.events_received()
    assert [type(e) for e in events] == [Audio, AgentResponse, Audio]
    assert session.last_agent_turn == 5


# --- interruption ---------------------------------------------------------------------------


def test_audio_at_or_below_the_interruption_is_dropped() -> None:
    session = active_session()
    session.receive_text(audio(7))
    session.receive_text(encode(Interruption(event_id=7)))
    session.receive_text(audio(7))
    session.receive_text(audio(6))
    session.receive_text(audio(8))
    events = session.events_received()
    assert events == [
        Audio(b"\x01\x00", 7),
        Interruption(event_id=7),
        Audio(b"\x01\x00", 8),
    ]
    assert session.stats.stale_audio_chunks == 2
    assert session.last_interruption == 7


def test_interruption_id_never_moves_back() -> None:
    session = active_session()
    session.receive_text(encode(Interruption(event_id=9)))
    session.receive_text(encode(Interruption(event_id=4)))
    assert session.last_interruption == 9
    session.receive_text(audio(9))
    assert session.stats.stale_audio_chunks == 1


def test_interruption_with_only_a_reason_interrupts_the_current_turn() -> None:
    session = active_session()
    session.receive_text(encode(Interruption(reason="user spoke")))  # no turn yet: nothing
    assert session.last_interruption is None
    session.receive_text(audio(3))
    session.receive_text(
        json.dumps({"type": "interruption", "interruption_event": {"reason": "x"}})
    )
    session.receive_text(audio(3))
    assert session.last_interruption == 3
    assert session.stats.stale_audio_chunks == 1


def test_local_barge_in_drops_the_rest_of_the_current_turn() -> None:
    session = active_session()
    session.drop_current_agent_turn()  # nothing to drop yet
    assert session.last_interruption is None
    session.receive_text(audio(5))
    session.drop_current_agent_turn()
    session.receive_text(audio(5))
    session.receive_text(encode(Interruption(event_id=5)))  # the server's, arriving later
    session.receive_text(audio(6))
    session.drop_current_agent_turn()
    session.drop_current_agent_turn()  # idempotent
    assert session.last_interruption == 6
    assert [type(e) for e in session.events_received()] == [Audio, Interruption, Audio]
    assert session.stats.stale_audio_chunks == 1
    session.receive_close(None)
    assert session.ending is not None
    assert session.ending.cut_turn is None


# --- pings ----------------------------------------------------------------------------------


def test_every_ping_is_answered_with_its_event_id() -> None:
    session = Session()
    session.initiate()
    session.data_to_send()
    session.receive_text(encode(Ping(11)))  # before metadata too
    session.receive_text(encode(METADATA))
    session.receive_text(encode(Ping(12, ping_ms=40)))
    session.receive_text('{"type":"ping","ping_event":{"event_id":13,"ping_ms":null}}')
    assert frames(session) == [
        {"type": "pong", "event_id": 11},
        {"type": "pong", "event_id": 12},
        {"type": "pong", "event_id": 13},
    ]
    assert session.last_ping_ms == 40
    assert session.stats.pings_answered == 3
    assert [e for e in session.events_received() if isinstance(e, Ping)] == [
        Ping(11),
        Ping(12, 40),
        Ping(13),
    ]


def test_no_pong_once_we_are_closing() -> None:
    session = active_session()
    session.hang_up()
    session.receive_text(encode(Ping(1)))
    assert session.data_to_send() == []


# --- client messages --------------------------------------------------------------------------


def test_text_and_control_messages() -> None:
    session = active_session()
    session.receive_text(encode(AgentResponse("hi", 4)))
    session.send_user_message("hello")
    session.send_contextual_update("on the kitchen pi", context_id="room")
    session.send_user_activity()
    session.send_feedback("like")
    session.send_feedback(None)
    session.send(UserMessage("again"))
    assert frames(session) == [
        {"type": "user_message", "text": "hello"},
        {"type": "contextual_update", "text": "on the kitchen pi", "context_id": "room"},
        {"type": "user_activity"},
        {"type": "feedback", "score": "like", "event_id": 4},
        {"type": "feedback", "score": None, "event_id": 4},
        {"type": "user_message", "text": "again"},
    ]


def test_feedback_needs_an_agent_turn() -> None:
    session = active_session()
    with pytest.raises(LocalProtocolError, match="no agent turn"):
        session.send_feedback("dislike")


def test_feedback_targets_the_newest_agent_turn() -> None:
    session = active_session()
    for event_id in (3, 9, 6):
        session.receive_text(encode(AgentResponse("x", event_id)))
    session.send_feedback("like")
    assert frames(session)[-1]["event_id"] == 9


def test_messages_are_refused_before_active_and_after_close() -> None:
    session = Session()
    session.initiate()
    with pytest.raises(LocalProtocolError, match="cannot send UserMessage in state initiating"):
        session.send_user_message("too early")
    session.receive_close(1000)
    with pytest.raises(LocalProtocolError, match="cannot send ContextualUpdate in state closed"):
        session.send(ContextualUpdate("late"))


def test_initiation_cannot_be_sent_by_send() -> None:
    session = active_session()
    with pytest.raises(LocalProtocolError, match="initiate"):
        session.send(ConversationInitiationClientData())


def test_mcp_approval() -> None:
    session = active_session()
    session.send_mcp_approval("mcp_1", approved=False)
    assert frames(session) == [
        {"type": "mcp_tool_approval_result", "tool_call_id": "mcp_1", "is_approved": False}
    ]
    session.send(McpToolApprovalResult("mcp_2", True))
    assert frames(session)[0]["is_approved"] is True


# --- client tools -----------------------------------------------------------------------------


def test_pending_tool_calls_are_tracked_and_answered_once() -> None:
    session = active_session()
    call = ClientToolCall("get_time", "call_1", {"tz": "UTC"}, 5, expects_response=True)
    silent = ClientToolCall("set_led", "call_2", {}, 5, expects_response=False)
    session.receive_text(encode(call))
    session.receive_text(encode(silent))
    assert session.pending_tool_calls == {"call_1": call}
    session.send_tool_result("call_1", "12:00")
    assert frames(session) == [
        {
            "type": "client_tool_result",
            "tool_call_id": "call_1",
            "result": "12:00",
            "is_error": False,
        }
    ]
    assert session.pending_tool_calls == {}
    with pytest.raises(LocalProtocolError, match="no pending client tool call 'call_1'"):
        session.send_tool_result("call_1", "again")
    with pytest.raises(LocalProtocolError, match="'call_2'"):
        session.send(ClientToolResult("call_2", "x", False))


def test_tool_error_result() -> None:
    session = active_session()
    session.receive_text(encode(ClientToolCall("nope", "c", {}, 1)))
    session.send_tool_result("c", "unknown tool: nope", is_error=True)
    assert frames(session)[0]["is_error"] is True


def test_tool_result_refused_when_closed() -> None:
    session = active_session()
    session.receive_text(encode(ClientToolCall("t", "c", {}, 1)))
    session.receive_close(None)
    assert session.pending_tool_calls == {}
    with pytest.raises(LocalProtocolError, match="state closed"):
        session.send(ClientToolResult("c", "late", False))


# --- robustness -----------------------------------------------------------------------------


def test_malformed_messages_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    session = active_session()
    with caplog.at_level(logging.WARNING):
        session.receive_text("{not json")
        session.receive_text('{"type":"audio","audio_event":{"audio_base_64":"!!","event_id":1}}')
    session.receive_text(encode(Ping(1)))
    assert session.stats.malformed_messages == 2
    assert "skipping malformed server message" in caplog.text
    assert session.state is SessionState.ACTIVE
    assert frames(session) == [{"type": "pong", "event_id": 1}]


def test_unknown_types_are_passed_on_and_counted() -> None:
    session = active_session()
    session.receive_text('{"type":"brand_new_event","x":1}')
    assert session.events_received() == [
        UnknownMessage("brand_new_event", {"type": "brand_new_event", "x": 1})
    ]
    assert session.stats.unknown_messages == 1


def test_other_events_pass_through_and_track_user_turns() -> None:
    session = active_session()
    session.receive_text(encode(UserTranscript("hello", 20)))
    session.receive_text('{"type":"vad_score","vad_score_event":{"vad_score":0.5}}')
    assert len(session.events_received()) == 2


# --- endings --------------------------------------------------------------------------------


def ended(session: Session) -> EndReason:
    events = session.events_received()
    assert isinstance(events[-1], ConversationEnded)
    assert session.state is SessionState.CLOSED
    assert session.ending is events[-1].ending
    return events[-1].ending.reason


def test_client_hang_up() -> None:
    session = active_session()
    session.hang_up()
    assert session.state is SessionState.CLOSING
    session.receive_close(1000, "User ended conversation")
    assert ended(session) is EndReason.CLIENT_HANGUP
    assert session.ending is not None
    assert not session.ending.retryable
    assert not session.ending.reason.is_error


def test_close_is_reported_once() -> None:
    session = active_session()
    session.receive_close(1000)
    session.receive_close(1011)
    events = session.events_received()
    assert sum(isinstance(e, ConversationEnded) for e in events) == 1
    assert session.ending is not None
    assert session.ending.code == 1000


def test_end_call_lets_the_last_words_arrive_then_ends() -> None:
    session = active_session()
    session.receive_text(encode(AgentToolResponse("end_call", "t1", "system", False, True, 8)))
    assert session.state is SessionState.ENDING
    assert not session.can_send_audio
    session.receive_text(audio(8, is_final=True))
    session.send_user_activity()  # text still allowed while ending
    session.receive_close(1000)
    events = session.events_received()
    assert any(isinstance(e, Audio) for e in events)
    assert isinstance(events[-1], ConversationEnded)
    assert events[-1].ending.reason is EndReason.AGENT_ENDED_CALL


def test_end_call_full_payload_counts_too() -> None:
    session = active_session()
    session.receive_text(
        json.dumps(
            {
                "type": "agent_tool_response_full_payload",
                "agent_tool_response_full_payload": {
                    "tool_name": "end_call",
                    "tool_call_id": "t",
                    "tool_type": "system",
                    "is_error": False,
                    "is_called": True,
                    "event_id": 2,
                    "full_tool_result": "",
                },
            }
        )
    )
    session.receive_close(1000)
    assert ended(session) is EndReason.AGENT_ENDED_CALL


def test_other_tool_responses_do_not_end() -> None:
    session = active_session()
    session.receive_text(encode(AgentToolResponse("skip_turn", "t", "system", False, True, 2)))
    assert session.state is SessionState.ACTIVE


def test_max_duration() -> None:
    session = active_session()
    session.receive_text(encode(ErrorEvent(1000, "time", error_type="max_duration_exceeded")))
    assert session.state is SessionState.ENDING
    session.receive_close(1000)
    assert ended(session) is EndReason.MAX_DURATION


def test_hang_up_while_ending() -> None:
    session = active_session()
    session.receive_text(encode(FlatErrorEvent("This request exceeds your quota limit.")))
    session.receive_text(encode(ErrorEvent(1002)))  # a second error event: still ending
    session.hang_up()
    assert session.state is SessionState.CLOSING
    session.receive_close(1002, "This request exceeds your quota limit.")
    assert ended(session) is EndReason.QUOTA_EXCEEDED


def test_close_before_metadata() -> None:
    session = Session()
    session.initiate()
    session.receive_close(None)
    reason = ended(session)
    assert reason is EndReason.CLOSED_BEFORE_METADATA
    assert reason.retryable
    assert session.ending is not None
    assert session.ending.before_metadata


def test_error_event_before_metadata_then_policy_close() -> None:
    session = Session()
    session.initiate()
    session.receive_text(encode(ClientErrorEvent(1008, "auth_error", "invalid signature")))
    assert session.state is SessionState.ENDING
    session.receive_close(1008, "")
    reason = ended(session)
    assert reason is EndReason.AUTH_REJECTED
    assert not reason.retryable
    assert reason.advice


def test_a_turn_cut_off_midway_is_reported() -> None:
    session = active_session()
    session.receive_text(audio(12))
    session.receive_close(None)
    assert session.ending is not None
    assert session.ending.cut_turn == 12
    assert session.ending.reason is EndReason.CONNECTION_LOST


def test_the_io_layer_names_a_silent_loss() -> None:
    session = active_session()
    session.receive_close(None, "no answer to WebSocket pings", lost=EndReason.STALLED)
    assert session.ending is not None
    assert session.ending.reason is EndReason.STALLED
    assert session.ending.retryable
    hung = active_session()
    hung.hang_up()
    hung.receive_close(None, lost=EndReason.STALLED)  # our own hang-up still wins
    assert hung.ending is not None
    assert hung.ending.reason is EndReason.CLIENT_HANGUP


def test_finished_turns_are_not_reported_as_cut() -> None:
    session = active_session()
    session.receive_text(audio(12))
    session.receive_text(audio(12, is_final=True))
    session.receive_text(audio(14))
    session.receive_text(
        '{"type":"agent_response_complete","agent_response_complete_event":{"event_id":13}}'
    )
    session.receive_text(
        '{"type":"agent_response_complete","agent_response_complete_event":{"event_id":14}}'
    )
    session.receive_text(audio(16))
    session.receive_text(encode(Interruption(event_id=16)))
    session.receive_close(1011)
    assert session.ending is not None
    assert session.ending.cut_turn is None
    assert session.ending.reason is EndReason.SERVER_ERROR


def test_idle_session_can_hang_up_or_close() -> None:
    session = Session()
    session.hang_up()
    assert session.state is SessionState.CLOSING
    other = Session()
    other.receive_close(None)
    assert other.state is SessionState.CLOSED


def test_hang_up_after_close_is_illegal() -> None:
    session = active_session()
    session.receive_close(1000)
    with pytest.raises(LocalProtocolError, match="cannot hang_up in state closed"):
        session.hang_up()
    assert session.state is SessionState.CLOSED


# --- queue_status ----------------------------------------------------------------------------


def queued(status: QueueState) -> str:
    return encode(QueueStatus(status))


def test_waiting_queues_the_session_and_admitted_resumes_it() -> None:
    session = active_session()
    assert session.queue_status is None
    session.receive_text(queued("waiting"))
    assert session.state is SessionState.QUEUED
    assert session.queue_status == "waiting"
    assert not session.can_send_audio
    assert session.events_received() == [QueueStatus("waiting")]
    with pytest.raises(LocalProtocolError, match="cannot send audio in state queued"):
        session.send_audio(b"\xff")
    with pytest.raises(LocalProtocolError, match="cannot send UserMessage in state queued"):
        session.send_user_message("hello?")
    session.receive_text(encode(Ping(7)))  # pings are still answered while waiting
    assert frames(session) == [{"type": "pong", "event_id": 7}]
    session.receive_text(queued("waiting"))  # a repeated waiting changes nothing
    assert session.state is SessionState.QUEUED
    session.receive_text(queued("admitted"))
    assert session.state is SessionState.ACTIVE
    assert session.queue_status == "admitted"
    session.send_audio(b"\xff")
    assert len(session.data_to_send()) == 1


def test_waiting_before_metadata_queues_once_metadata_arrives() -> None:
    session = Session()
    session.initiate()
    session.receive_text(queued("waiting"))
    assert session.state is SessionState.INITIATING
    session.receive_text(encode(METADATA))
    assert session.state is SessionState.QUEUED
    assert session.conversation_id == "conv_1"
    assert session.events_received() == [QueueStatus("waiting"), METADATA]


def test_admitted_before_metadata_or_when_not_waiting_changes_nothing() -> None:
    session = Session()
    session.initiate()
    session.receive_text(queued("admitted"))
    session.receive_text(encode(METADATA))
    assert session.state is SessionState.ACTIVE
    session.receive_text(queued("admitted"))
    assert session.state is SessionState.ACTIVE
    assert session.queue_status == "admitted"


def test_timed_out_ends_the_wait_and_the_close_is_retryable() -> None:
    session = active_session()
    session.receive_text(queued("waiting"))
    session.receive_text(queued("timed_out"))
    assert session.state is SessionState.ENDING
    session.receive_text(queued("waiting"))  # late news of the queue moves nothing now
    assert session.state is SessionState.ENDING
    session.receive_close(3008, "too many concurrent connections")
    ending = session.ending
    assert ending is not None
    assert ending.reason is EndReason.QUEUE_TIMED_OUT
    assert ending.retryable and ending.reason.is_error


def test_timed_out_then_a_dropped_connection_is_still_a_queue_timeout() -> None:
    session = Session()
    session.initiate()
    session.receive_text(queued("timed_out"))
    assert session.state is SessionState.ENDING
    session.receive_close(None)
    assert session.ending is not None
    assert session.ending.reason is EndReason.QUEUE_TIMED_OUT


def test_hanging_up_while_queued_is_a_hang_up() -> None:
    session = active_session()
    session.receive_text(queued("waiting"))
    session.receive_text(queued("timed_out"))
    session.hang_up()
    session.receive_close(1000)
    assert session.ending is not None
    assert session.ending.reason is EndReason.CLIENT_HANGUP


@pytest.mark.parametrize("trigger", ["hang_up", "close", "error"])
def test_a_queued_session_can_end_every_way(trigger: str) -> None:
    session = active_session()
    session.receive_text(queued("waiting"))
    if trigger == "hang_up":
        session.hang_up()
        assert session.state is SessionState.CLOSING
    elif trigger == "error":
        session.receive_text(encode(ErrorEvent(1011)))
        assert session.state is SessionState.ENDING
    else:
        session.receive_close(1006)
        assert session.state is SessionState.CLOSED


def test_malformed_queue_status_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    session = active_session()
    session.receive_text('{"type":"queue_status","queue_status_event":{"status":"soon"}}')
    assert session.state is SessionState.ACTIVE
    assert session.events_received() == []
    assert session.stats.malformed_messages == 1
    assert "skipping malformed server message: queue_status_event.status" in caplog.text


# --- the transition table ---------------------------------------------------------------------


def test_every_state_is_reachable_and_closed_is_final() -> None:
    targets = set(TRANSITIONS.values()) | {SessionState.IDLE}
    assert targets == set(SessionState)
    assert not [key for key in TRANSITIONS if key[0] is SessionState.CLOSED]
    for state in SessionState:
        if state is not SessionState.CLOSED:
            assert TRANSITIONS[(state, Trigger.CLOSED)] is SessionState.CLOSED


def test_state_diagram_lists_every_transition() -> None:
    diagram = state_diagram()
    assert diagram.startswith("stateDiagram-v2")
    for (source, trigger), target in TRANSITIONS.items():
        assert f"{source.value} --> {target.value}: {trigger.value}" in diagram


def test_transitions_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="piagent.protocol.session"):
        active_session()
    assert "session idle --initiate--> initiating" in caplog.text
    assert "session initiating --metadata--> active" in caplog.text
