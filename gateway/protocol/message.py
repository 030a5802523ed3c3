"""The decoded form of every deepstream message: one flat, slotted record of optional fields.

Invariant: a field is ``None`` exactly when it is absent on the wire. The codec encodes every
field that is not ``None`` (as protobuf.js does for fields that are set, defaults included) and
drops fields that the topic's schema does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .constants import ACTIONS, Topic

__all__ = ["Message"]


@dataclass(slots=True)
class Message:
    topic: int
    action: int
    name: str | None = None
    names: list[str] = field(default_factory=list)
    data: str | None = None
    """JSON text, never parsed by the codec."""
    correlation_id: str | None = None
    is_error: bool | None = None
    is_ack: bool | None = None
    is_write_ack: bool | None = None
    version: int | None = None
    versions: dict[str, int] | None = None
    path: str | None = None
    pattern: str | None = None
    subscription: str | None = None
    original_action: int | None = None
    original_topic: int | None = None
    url: str | None = None
    protocol_version: str | None = None
    sdk_version: str | None = None
    sdk_type: str | None = None
    requestor_name: str | None = None
    requestor_data: str | None = None

    def ack(self) -> Message:
        """The acknowledgement of this message: same topic and action, ``is_ack`` set."""
        return Message(
            self.topic,
            self.action,
            name=self.name,
            names=self.names,
            correlation_id=self.correlation_id,
            is_ack=True,
        )

    def __repr__(self) -> str:
        topic = Topic(self.topic).name if self.topic in Topic._value2member_map_ else self.topic
        enum = ACTIONS.get(Topic(self.topic)) if self.topic in Topic._value2member_map_ else None
        action = (
            enum(self.action).name
            if enum is not None and self.action in enum._value2member_map_
            else self.action
        )
        parts = [f"{topic}.{action}"]
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value is not None and value != []:
                parts.append(f"{f.name}={value!r}")
        return f"Message({', '.join(parts)})"
