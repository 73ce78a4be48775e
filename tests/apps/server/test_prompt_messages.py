"""A prompt is defined once (interaction.prompts.SlicePrompt): the server's messages are built from its fields,
types and limits, a field added to the dataclass reaches the schema and the wire with no other edit, every kind
of prompt crosses the wire and the server's validation unchanged, and a bad prompt gets one line naming its field."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from medsam3.apps.server.schemas import BoxMessage, PointMessage, SlicePromptMessage, message_model
from medsam3.geometry.slicing import SliceAxis
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt, described
from medsam3.transports.wire_format import encode_volume, prompt_from_message, prompt_to_message

from server_harness import API_KEY, running_server, small_volume


@pytest.mark.parametrize("definition, message", [(SlicePrompt, SlicePromptMessage), (PointPrompt, PointMessage),
                                                 (BoxPrompt, BoxMessage)])
def test_the_messages_have_the_prompts_fields(definition, message):
    assert [f.name for f in dataclasses.fields(definition)] == list(message.model_fields)


def test_the_messages_take_every_view_and_only_those():
    axis = SlicePromptMessage.model_fields["axis"].annotation
    assert set(typing.get_args(axis)) == {a.value for a in SliceAxis}


@dataclass(frozen=True)
class LabelledPrompt(SlicePrompt):
    """A prompt kind someone adds: two new fields, nothing written for the server or the wire."""

    label: str = field(default="", metadata=described("what the clicks mark", max_length=20))
    weights: tuple[float, ...] = field(default=(), metadata=described(max_items=4, ge=0.0))


def test_a_field_added_to_the_prompt_is_in_the_servers_schema_and_crosses_the_wire():
    message = message_model(LabelledPrompt)
    assert list(message.model_fields) == [f.name for f in dataclasses.fields(LabelledPrompt)]
    assert message.model_json_schema()["properties"]["label"]["description"] == "what the clicks mark"
    prompt = LabelledPrompt("axial", points=(PointPrompt((1.0, 2.0, 3.0)),), label="tumour", weights=(0.5, 2.0))
    back = prompt_from_message(message.model_validate(prompt_to_message(prompt)).model_dump(), LabelledPrompt)
    assert back == prompt and back.weights == (0.5, 2.0) and back.label == "tumour"
    with pytest.raises(ValidationError, match="at most 20 characters"):  # the limit stated in the dataclass
        message.model_validate({**prompt_to_message(prompt), "label": "x" * 21})
    with pytest.raises(ValidationError, match="at most 4 items"):
        message.model_validate({**prompt_to_message(prompt), "weights": [1.0] * 5})
    with pytest.raises(ValidationError, match=r"weights\.1\n.*greater than or equal to 0"):  # each item's limit
        message.model_validate({**prompt_to_message(prompt), "weights": [1.0, -1.0]})


def test_a_prompt_field_the_wire_cannot_bound_is_refused_when_the_schema_is_built():
    @dataclass(frozen=True)
    class Unbounded(SlicePrompt):
        notes: tuple[str, ...] = ()

    with pytest.raises(TypeError, match=r"Unbounded.notes: a list on the wire needs a bound: described\(max_items"):
        message_model(Unbounded)


@pytest.mark.parametrize("prompt", [
    SlicePrompt(SliceAxis.CORONAL, points=(PointPrompt((1.0, 2.5, 3.0)), PointPrompt((4.0, 5.0, 6.0), False))),
    SlicePrompt("sagittal", box=BoxPrompt((1.0, 2.0, 3.0), (1.0, 8.0, 9.0))),
    SlicePrompt("axial", mask=np.eye(5, 7, dtype=bool), slice_index=2),
])
def test_every_kind_of_prompt_crosses_the_wire_and_the_servers_validation_unchanged(prompt):
    message = SlicePromptMessage.model_validate(prompt_to_message(prompt)).model_dump()
    back = prompt_from_message(message)
    assert back == prompt  # axis, points, box, slice index
    if prompt.mask is None:
        assert back.mask is None
    else:
        np.testing.assert_array_equal(back.mask, prompt.mask)


# What the server answered before the messages were built from the dataclass (the HTTP API is unchanged).
BAD_PROMPTS = [
    ({"points": [{"ijk": [1, 2]}]}, "prompt.points.0.ijk: List should have at least 3 items after validation, not 2"),
    ({"points": [{"ijk": [1, 2, 3]}] * 1001},
     "prompt.points: List should have at most 1000 items after validation, not 1001"),
    ({"points": [{"ijk": [1, 2, 3], "weight": 1}]}, "prompt.points.0.weight: Extra inputs are not permitted"),
    ({"axis": "diagonal"}, "prompt.axis: Input should be 'axial', 'coronal' or 'sagittal'"),
    ({"box": {"corner_a": [1, 2, 3]}}, "prompt.box.corner_b: Field required"),
    ({"mask": {"shape": [4, 70000], "bits": "AAAA"}}, "prompt.mask.shape.1: Input should be less than or equal to "
                                                      "65536"),
    ({"slice_index": -1}, "prompt.slice_index: Input should be greater than or equal to 0"),
    ({"points": [{"ijk": [1.5, 2, "1e400"]}]}, "prompt.points.0.ijk.2: Input should be a finite number"),
]


def test_a_bad_prompt_gets_one_line_naming_its_field():
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with running_server() as url:
        session_id = httpx.post(f"{url}/sessions", content=encode_volume(small_volume()),
                                headers=auth).json()["session_id"]
        for change, says in BAD_PROMPTS:
            answer = httpx.post(f"{url}/sessions/{session_id}/prompts", headers=auth,
                                json={"object_id": 1, "prompt": {"axis": "axial", **change}})
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["message"] == f"The request does not match the API: body.{says}."
