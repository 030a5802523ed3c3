"""Fuzzing the codec: structurally valid protobuf of every topic with hostile values decodes as
protobuf's rules say; mutated, truncated and garbage bytes raise only the codec's own errors;
whatever decodes re-encodes to a fixed point.

Frames per example: one built frame plus ``MUTANTS`` variants of it, all counted.
"""

from __future__ import annotations

import random

from hypothesis import event, given
from hypothesis import strategies as st

from gateway.exceptions import LoneSurrogateText, MessageTooLarge, ProtocolError
from gateway.protocol import Message, decode, encode
from tests.fuzz import budget
from tests.fuzz.strategies import WireFrame, garbage, messages, mutations, wire_frames

MUTANTS = 80


def decodes_cleanly(frame: bytes, max_size: int = 1 << 20) -> Message | None:
    """``decode(frame)``, or None for a ``ProtocolError``; anything else escapes and fails.

    A message that decodes must re-encode, decode to itself again, and from then on encode to
    the same bytes (the canonical form).
    """
    try:
        msg = decode(frame, max_size)
    except LoneSurrogateText as exc:
        # The message read with lone surrogates kept, for a refusal that echoes it: it must
        # encode (as protobuf.js writes one) and read back the same. (A surrogate in a field
        # that a later duplicate overrides is refused too, though the message has none left.)
        assert isinstance(exc.message, Message)
        try:
            again = decode(encode(exc.message))
        except LoneSurrogateText as refused:
            again = refused.message
        assert again == exc.message
        return None
    except ProtocolError:
        return None
    canonical = encode(msg)
    assert decode(canonical) == msg, (frame.hex(), msg)
    assert encode(decode(canonical)) == canonical
    return msg


@budget.fuzz_settings(budget.frames_for("decoder") // 2 // (MUTANTS + 1))
@given(wire_frames(), st.randoms(use_true_random=False))
def test_built_frames_decode_as_protobuf_rules_say(case: WireFrame, rnd: random.Random) -> None:
    got: Message | type[ProtocolError]
    try:
        got = decode(case.frame)
    except ProtocolError as exc:
        got = type(exc)
    assert got == case.expected, case.frame.hex()
    event(f"outcome: {got if isinstance(got, type) else 'decoded'}".replace("gateway.", ""))
    if isinstance(got, Message):
        decodes_cleanly(case.frame)
    for mutant in mutations(case.frame, rnd, MUTANTS):
        decodes_cleanly(mutant)
    budget.count("decoder", 1 + MUTANTS)


@budget.fuzz_settings(budget.frames_for("decoder") // 4 // (MUTANTS + 1))
@given(messages(), st.randoms(use_true_random=False))
def test_messages_round_trip_and_their_mutants_fail_cleanly(
    msg: Message, rnd: random.Random
) -> None:
    frame = encode(msg)
    if decodes_cleanly(frame) is not None:
        assert decode(frame) == msg
    for mutant in mutations(frame, rnd, MUTANTS):
        decodes_cleanly(mutant)
    budget.count("decoder", 1 + MUTANTS)


@budget.fuzz_settings(budget.frames_for("decoder") // 4 // 20)
@given(st.lists(garbage, min_size=20, max_size=20), st.integers(0, 200))
def test_garbage_and_tiny_size_limits_raise_only_codec_errors(
    frames: list[bytes], max_size: int
) -> None:
    for frame in frames:
        try:
            decodes_cleanly(frame, max_size)
        except MessageTooLarge:
            assert len(frame) > max_size
    budget.count("decoder", len(frames))
