"""The JSON messages of the server's API (they are the OpenAPI schema).

A prompt is defined once, as :class:`medsam3.interaction.prompts.SlicePrompt`: :func:`message_model` builds its
message (and its points' and box's) from the dataclass's fields, types and limits, and
:mod:`medsam3.transports.wire_format` converts prompts field by field on both sides. A field added to the prompt
is in this schema without an edit here; a request that breaks a limit gets the validation's one line (app.py)."""

from __future__ import annotations

import dataclasses
import functools
import typing
from enum import Enum
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from ...geometry.slicing import SliceAxis
from ...interaction.prompts import (MAX_INDEX, BoxPrompt, PointPrompt, SlicePrompt, optional_type,
                                     prompt_fields, tuple_items)

ObjectId = Annotated[int, Field(ge=1, le=MAX_INDEX)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
Axis = Literal[tuple(axis.value for axis in SliceAxis)]  # the views of interaction.prompts.SlicePrompt
Bits = Annotated[str, Field(max_length=512 * 1024 * 1024, description="base64(zlib(numpy.packbits(mask)))")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SliceMaskMessage(Message):  # a prompt's mask (numpy.ndarray) on the wire: (rows, columns), packed bits
    shape: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=2)]
    bits: Bits


@functools.cache
def message_model(definition: type, name: str = "") -> type[Message]:
    """The pydantic message of a prompt dataclass: one field per dataclass field, in order, with its default,
    description and limits (``PointPrompt`` -> ``PointMessage``)."""
    fields = {}
    for field, kind in prompt_fields(definition):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        default = ... if default is dataclasses.MISSING else list(default) if isinstance(default, tuple) else default
        details = field.metadata.get("doc") and {"description": field.metadata["doc"]}
        fields[field.name] = (_message_type(kind, field.metadata.get("limits", {}), f"{definition.__name__}."
                                            f"{field.name}"), Field(default, **(details or {})))
    return create_model(name or definition.__name__.removesuffix("Prompt") + "Message", __base__=Message, **fields)


def _message_type(kind, limits: dict, where: str):
    """The JSON type of one prompt field's type (the types :mod:`..transports.wire_format` converts)."""
    kind, optional = optional_type(kind)
    if dataclasses.is_dataclass(kind):
        message = message_model(kind)
    elif kind is np.ndarray:
        message = SliceMaskMessage
    elif isinstance(kind, type) and issubclass(kind, Enum):
        message = Literal[tuple(member.value for member in kind)]
    elif typing.get_origin(kind) is tuple:
        items = tuple_items(kind, 1)
        if len(items) == 1 and "max_items" not in limits:
            raise TypeError(f"{where}: a list on the wire needs a bound: described(max_items=...).")
        counts = {"max_length": limits["max_items"]} if len(items) == 1 else {"min_length": len(items),
                                                                              "max_length": len(items)}
        if len(set(items)) != 1:
            raise TypeError(f"{where}: a tuple on the wire holds items of one type, not {items}.")
        each = {key: value for key, value in limits.items() if key != "max_items"}  # the items' own limits
        message = Annotated[list[_message_type(items[0], each, where)], Field(**counts)]
    elif kind is float:
        message = Annotated[Coordinate, Field(**limits)] if limits else Coordinate
    elif kind in (int, str):
        if kind is str and "max_length" not in limits:
            raise TypeError(f"{where}: a string on the wire needs a bound: described(max_length=...).")
        message = Annotated[kind, Field(**limits)] if limits else kind
    elif kind is bool:
        message = bool
    else:
        raise TypeError(f"{where}: the wire has no form for {kind}; use one of the prompt field types of "
                        "medsam3.transports.wire_format.")
    return message | None if optional else message


SlicePromptMessage = message_model(SlicePrompt, "SlicePromptMessage")
PointMessage, BoxMessage = message_model(PointPrompt), message_model(BoxPrompt)


class PromptRequest(Message):
    object_id: ObjectId
    prompt: SlicePromptMessage
    whole_volume: bool = False
    target_text: Annotated[str, Field(max_length=1000)] = ""


class TextRequest(Message):
    text: Annotated[str, Field(min_length=1, max_length=1000)]
    axis: Axis = "axial"
    slice_index: Annotated[int, Field(ge=0, le=MAX_INDEX)] | None = None
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


MaskBox = Annotated[list[Annotated[int, Field(ge=0, le=MAX_INDEX)]], Field(min_length=6, max_length=6,
                                                                             description="k0, k1, j0, j1, i0, i1")]


class SetMaskRequest(Message):
    box: MaskBox
    bits: Bits
    label: Annotated[str, Field(max_length=1000)] = ""


class MaskUpdateMessage(Message):
    object_id: int
    box: list[int] = Field(description="changed region k0, k1, j0, j1, i0, i1 (half-open); all zero if nothing")
    bits: str
    slice_scores: dict[str, float] = {}
    axis: str = ""
    label: str = ""
    note: str = ""


class TextResponse(Message):
    updates: list[MaskUpdateMessage]


class SessionCreated(Message):
    session_id: str
    shape: list[int]
    idle_timeout_seconds: float


class SessionClosed(Message):
    session_id: str
    closed: bool = True


class CancelResponse(Message):
    session_id: str
    stopping: int = Field(description="requests running or waiting on the session that were asked to stop")


class Health(Message):
    status: str
    server_version: str
    compatible_client_versions: str


class ErrorBody(Message):
    kind: str
    message: str


class ErrorMessage(Message):
    error: ErrorBody
