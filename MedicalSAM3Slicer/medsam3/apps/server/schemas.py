"""The JSON messages of the server's API (they are the OpenAPI schema). A prompt is defined once, as
:class:`medsam3.interaction.prompts.SlicePrompt`: these messages have its fields (tests/apps/server/
test_prompt_messages.py holds them equal) and :mod:`medsam3.transports.wire_format` converts them on both sides."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...geometry.slicing import SliceAxis

ObjectId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
Triple = Annotated[list[Coordinate], Field(min_length=3, max_length=3)]
Axis = Literal[tuple(axis.value for axis in SliceAxis)]  # the views of interaction.prompts.SlicePrompt
Bits = Annotated[str, Field(max_length=512 * 1024 * 1024, description="base64(zlib(numpy.packbits(mask)))")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PointMessage(Message):
    ijk: Triple = Field(description="voxel coordinates (i, j, k); voxel centres are integers")
    positive: bool = True


class BoxMessage(Message):
    corner_a: Triple
    corner_b: Triple


class SliceMaskMessage(Message):
    shape: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=2)]
    bits: Bits


class SlicePromptMessage(Message):
    axis: Axis
    points: Annotated[list[PointMessage], Field(max_length=1000)] = []
    box: BoxMessage | None = None
    mask: SliceMaskMessage | None = None
    slice_index: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class PromptRequest(Message):
    object_id: ObjectId
    prompt: SlicePromptMessage
    whole_volume: bool = False
    target_text: Annotated[str, Field(max_length=1000)] = ""


class TextRequest(Message):
    text: Annotated[str, Field(min_length=1, max_length=1000)]
    axis: Axis = "axial"
    slice_index: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


MaskBox = Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=6, max_length=6,
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
