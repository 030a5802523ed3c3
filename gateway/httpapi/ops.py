"""The HTTP API's operations (deepstream's JSON format) as protocol messages, and the replies
the topic handlers send back as per-operation results, with the shapes the reference server
7.0.2 answers.

``to_message`` validates one operation and builds the message a WebSocket client would send for
it; ``to_result`` turns each reply into the operation's result, or ``None`` while the operation
is not finished (an RPC accepted by its provider).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..exceptions import UnencodableData
from ..protocol import (
    EventAction,
    Message,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
    payload,
)
from ..protocol.constants import ACTIONS
from ..records.paths import FORBIDDEN_KEYS

__all__ = ["BadOperation", "to_message", "to_result"]

R = RecordAction
_PATH_PARTS = re.compile(r"[.\[\]]")


class BadOperation(ValueError):
    """An operation the API cannot run: the whole request is refused (400) with this text."""


def _string(op: dict[str, Any], key: str, topic: str) -> str:
    value = op.get(key)
    if value is None:
        raise BadOperation(f"property '{key}' is required for topic '{topic}'")
    if not isinstance(value, str) or not value:
        raise BadOperation(f"property '.{key}' should be a non-empty string")
    return value


def _json(value: Any) -> str:
    try:
        return payload.dumps(value)
    except UnencodableData as exc:  # pragma: no cover - parsed JSON always re-encodes
        raise BadOperation(str(exc)) from None


def to_message(op: Any, correlation_id: str) -> Message:
    """The message for operation ``op``; raises ``BadOperation``."""
    if not isinstance(op, dict):
        raise BadOperation("an operation must be an object")
    topic, action = op.get("topic"), op.get("action")
    if topic == "record" and action == "notify":
        names = op.get("recordNames")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise BadOperation("property '.recordNames' should be a non-empty array of names")
        return Message(Topic.RECORD, R.NOTIFY, names=names, correlation_id=correlation_id)
    if topic == "list":  # a list is a record holding an array of names
        name = _string(op, "listName", "list")
        if action == "read":
            return Message(Topic.RECORD, R.READ, name=name)
        if action == "delete":
            return Message(Topic.RECORD, R.DELETE, name=name)
        if action == "write":
            return _write({**op, "path": None}, name, correlation_id)
    elif topic == "record":
        name = _string(op, "recordName", "record")
        if action == "read":
            return Message(Topic.RECORD, R.READ, name=name)
        if action == "head":
            return Message(Topic.RECORD, R.HEAD, name=name)
        if action == "delete":
            return Message(Topic.RECORD, R.DELETE, name=name)
        if action == "write":
            return _write(op, name, correlation_id)
    elif topic == "event":
        if action == "emit":
            name = _string(op, "eventName", "event")
            data = _json(op["data"]) if "data" in op else None
            return Message(Topic.EVENT, EventAction.EMIT, name=name, data=data)
    elif topic == "rpc":
        if action == "make":
            name = _string(op, "rpcName", "rpc")
            data = _json(op["data"]) if "data" in op else None
            return Message(
                Topic.RPC, RpcAction.REQUEST, name=name, correlation_id=correlation_id, data=data
            )
    elif topic == "presence":
        if action == "query":
            names = op.get("names")
            if names is None:
                return Message(Topic.PRESENCE, PresenceAction.QUERY_ALL)
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise BadOperation("property '.names' should be an array of non-empty strings")
            return Message(
                Topic.PRESENCE, PresenceAction.QUERY, names=names, correlation_id=correlation_id
            )
    else:
        raise BadOperation(f"unknown topic {topic!r}")
    raise BadOperation(f"unknown action {action!r} for topic '{topic}'")


def _write(op: dict[str, Any], name: str, correlation_id: str) -> Message:
    if "data" not in op:
        raise BadOperation("property 'data' is required for a record write")
    version = op.get("version", -1)
    if type(version) is not int or version < -1:
        raise BadOperation("property '.version' should be an integer >= -1")
    path = op.get("path")
    if path is None:
        action = R.CREATEANDUPDATE
    elif not isinstance(path, str) or not path:
        raise BadOperation("property '.path' should be a non-empty string")
    else:
        if FORBIDDEN_KEYS.intersection(p.strip() for p in _PATH_PARTS.split(path)):
            raise BadOperation(f"path {path!r} reaches a prototype ({', '.join(FORBIDDEN_KEYS)})")
        action = R.CREATEANDPATCH
    return Message(
        Topic.RECORD,
        action,
        name=name,
        path=path,
        version=version,
        data=_json(op["data"]),
        correlation_id=correlation_id,
        is_write_ack=True,
    )


def _parsed(data: str | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data


def to_result(msg: Message) -> dict[str, Any] | None:
    """The result a reply makes for its operation; None if more replies will come."""
    topic, action = msg.topic, msg.action
    if topic == Topic.RPC and action == RpcAction.REQUEST_ERROR:  # the provider's own error
        return {"errorTopic": "rpc", "error": _parsed(msg.data), "success": False}
    if msg.is_error or (topic, action) in _ERRORS_WITHOUT_FLAG:
        return _error(msg)
    if topic == Topic.RECORD:
        if action == R.READ_RESPONSE:
            return {"version": msg.version, "data": _parsed(msg.data), "success": True}
        if action == R.HEAD_RESPONSE:
            return {"version": msg.version, "success": True}
        return {"success": True}  # WRITE_ACKNOWLEDGEMENT, DELETE_SUCCESS
    if topic == Topic.RPC:
        if action == RpcAction.ACCEPT or msg.is_ack:
            return None
        return {"data": _parsed(msg.data), "success": True}
    if topic == Topic.PRESENCE:
        if action == PresenceAction.QUERY_ALL_RESPONSE:
            return {"users": list(msg.names), "success": True}
        return {"users": _parsed(msg.data), "success": True}
    return {"success": True}


_ERRORS_WITHOUT_FLAG = frozenset(
    {
        (Topic.RECORD, R.VERSION_EXISTS),
        (Topic.RPC, RpcAction.NO_RPC_PROVIDER),
        (Topic.RPC, RpcAction.ACCEPT_TIMEOUT),
        (Topic.RPC, RpcAction.RESPONSE_TIMEOUT),
    }
)
"""Failures the handlers send without ``is_error`` (the wire protocol marks them so)."""


def _error(msg: Message) -> dict[str, Any]:
    topic = Topic(msg.topic)
    action = msg.action
    result: dict[str, Any] = {
        "errorTopic": topic.name.lower(),
        "errorEvent": action,
        "success": False,
    }
    name = msg.name
    if action == getattr(ACTIONS[topic], "MESSAGE_DENIED", None):
        result["action"] = msg.original_action
        original = _action_name(topic, msg.original_action)
        result["error"] = f'Message denied. Action "{original}" is not permitted.'
    elif topic == Topic.RECORD and action in (R.VERSION_EXISTS, R.INVALID_VERSION):
        if action == R.VERSION_EXISTS:
            result["error"] = (
                f'Record update failed. Version {msg.version} exists for record "{name}".'
            )
        else:  # a version from the future; the reply carries the current one
            result["error"] = (
                f'Record update failed. Version is not valid for record "{name}" '
                f"(current version {msg.version})."
            )
        result["currentVersion"] = msg.version
        if action == R.VERSION_EXISTS:  # INVALID_VERSION carries the refused data, not the current
            result["currentData"] = _parsed(msg.data)
    elif topic == Topic.RECORD and action == R.RECORD_NOT_FOUND:
        result["error"] = f'Record read failed. Record "{name}" could not be found.'
    elif topic == Topic.RPC and action == RpcAction.NO_RPC_PROVIDER:
        result["error"] = f'No provider was available to handle the RPC "{name}".'
    elif topic == Topic.RPC and action == RpcAction.RESPONSE_TIMEOUT:
        result["error"] = "The RPC response timeout was exceeded by the provider."
    else:
        reason = _parsed(msg.data)
        result["error"] = f"An error occurred: {_action_name(topic, action)}." + (
            f" {reason}" if isinstance(reason, str) and reason else ""
        )
        if name is not None:
            result["errorParams"] = name
    return result


def _action_name(topic: Topic, action: int | None) -> str:
    enum = ACTIONS.get(topic)
    if enum is None or action is None or action not in enum._value2member_map_:
        return str(action)
    return enum(action).name
