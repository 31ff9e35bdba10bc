"""Typed, immutable messages and the registry that names, versions and upcasts them.

Events and commands are msgspec Structs: frozen, keyword-only, several times faster to encode
and decode than dataclasses through `json`. They are stored as JSON under a *name* and a
*schema version*, never under a Python class path, so renaming a class never breaks old data
(DESIGN §10). An upcaster turns a stored payload of version n into version n+1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from procession.errors import ConfigurationError, MalformedMessage, UnknownMessageType


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event and command."""


class Event(Message, frozen=True, kw_only=True):
    """A fact, named in the past tense (`ContractRevoked`)."""


class Command(Message, frozen=True, kw_only=True):
    """An intent, named in the imperative (`RevokeContract`).

    `command_id` is the idempotency key: a command re-sent with the same id is answered with
    the original result and appends nothing. Left empty, the engine assigns one (a fresh id
    when sent by a caller; a deterministic one when sent by a process step).
    """

    command_id: str = ""


M = TypeVar("M", bound=Message)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MessageType:
    cls: type[Message]
    name: str
    version: int
    upcasters: Mapping[int, Upcaster]
    decoder: msgspec.json.Decoder[Any] = field(repr=False)


class MessageRegistry:
    """Maps message classes to stored names and versions, and back."""

    def __init__(self) -> None:
        self._by_name: dict[str, MessageType] = {}
        self._by_cls: dict[type[Message], MessageType] = {}
        self._encoder = msgspec.json.Encoder()

    def register(
        self,
        cls: type[M],
        *,
        name: str | None = None,
        version: int = 1,
        upcasters: Mapping[int, Upcaster] | None = None,
    ) -> type[M]:
        """Register `cls`; `upcasters[n]` turns a version-n payload into version n+1."""
        mtype = MessageType(
            cls, name or cls.__name__, version, dict(upcasters or {}), msgspec.json.Decoder(cls)
        )
        existing = self._by_name.get(mtype.name)
        if existing is not None and existing.cls is not cls:
            raise ConfigurationError(f"message name {mtype.name!r} is already registered")
        missing = [v for v in range(1, version) if v not in mtype.upcasters]
        if version > 1 and missing and mtype.upcasters:
            raise ConfigurationError(f"{mtype.name}: no upcaster from version(s) {missing}")
        self._by_name[mtype.name] = mtype
        self._by_cls[cls] = mtype
        return cls

    def register_all(self, *classes: type[Message]) -> None:
        for cls in classes:
            self.register(cls)

    def type_of(self, message: Message) -> MessageType:
        try:
            return self._by_cls[type(message)]
        except KeyError:
            raise UnknownMessageType(
                f"message type {type(message).__name__} is not registered; "
                "register it with MessageRegistry.register"
            ) from None

    def type_of_class(self, cls: type[Message]) -> MessageType:
        try:
            return self._by_cls[cls]
        except KeyError:
            raise UnknownMessageType(f"message type {cls.__name__} is not registered") from None

    def lookup(self, name: str) -> MessageType:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownMessageType(f"message type {name!r} is not registered") from None

    def knows(self, name: str) -> bool:
        return name in self._by_name

    def knows_class(self, cls: type[Message]) -> bool:
        return cls in self._by_cls

    def classes(self) -> list[type[Message]]:
        """Every registered message class."""
        return list(self._by_cls)

    def encode(self, message: Message) -> tuple[str, int, str]:
        """(name, schema version, JSON text) of a registered message."""
        mtype = self.type_of(message)
        return mtype.name, mtype.version, self._encoder.encode(message).decode()

    def decode(self, name: str, version: int, data: str | bytes) -> Message:
        """The current-shape message from a stored payload, upcasting older versions."""
        mtype = self.lookup(name)
        try:
            if version == mtype.version:
                return mtype.decoder.decode(data)  # type: ignore[no-any-return]
            payload = msgspec.json.decode(data)
            return self.convert(mtype, payload, version)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise MalformedMessage(f"{name} v{version}: {exc}") from None

    def from_dict(
        self, name: str, payload: Mapping[str, Any], version: int | None = None
    ) -> Message:
        """Build a message from a plain mapping (a CLI or HTTP payload), validating it."""
        mtype = self.lookup(name)
        try:
            return self.convert(mtype, dict(payload), version or mtype.version)
        except msgspec.ValidationError as exc:
            raise MalformedMessage(f"{name}: {exc}") from None

    def convert(self, mtype: MessageType, payload: dict[str, Any], version: int) -> Message:
        if version > mtype.version:
            raise MalformedMessage(
                f"{mtype.name} v{version} is newer than this program's v{mtype.version}"
            )
        for v in range(version, mtype.version):
            upcast = mtype.upcasters.get(v)
            if upcast is None:
                raise MalformedMessage(f"{mtype.name}: no upcaster from version {v}")
            payload = upcast(payload)
        return msgspec.convert(payload, mtype.cls)


def to_dict(message: Message) -> dict[str, Any]:
    """A message as plain JSON-compatible data."""
    return msgspec.to_builtins(message)  # type: ignore[no-any-return]
