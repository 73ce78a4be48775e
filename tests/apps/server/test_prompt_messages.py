"""A prompt is defined once (interaction.prompts.SlicePrompt): the server's messages have exactly its fields and
views, and every kind of prompt crosses the wire and the server's validation unchanged."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

from medsam3.apps.server.schemas import BoxMessage, PointMessage, SlicePromptMessage
from medsam3.geometry.slicing import SliceAxis
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from medsam3.transports.wire_format import slice_prompt_from_message, slice_prompt_to_message


@pytest.mark.parametrize("definition, message", [(SlicePrompt, SlicePromptMessage), (PointPrompt, PointMessage),
                                                 (BoxPrompt, BoxMessage)])
def test_the_messages_have_the_prompts_fields(definition, message):
    assert [f.name for f in dataclasses.fields(definition)] == list(message.model_fields)


def test_the_messages_take_every_view_and_only_those():
    axis = SlicePromptMessage.model_fields["axis"].annotation
    assert set(typing.get_args(axis)) == {a.value for a in SliceAxis}


@pytest.mark.parametrize("prompt", [
    SlicePrompt(SliceAxis.CORONAL, points=(PointPrompt((1.0, 2.5, 3.0)), PointPrompt((4.0, 5.0, 6.0), False))),
    SlicePrompt("sagittal", box=BoxPrompt((1.0, 2.0, 3.0), (1.0, 8.0, 9.0))),
    SlicePrompt("axial", mask=np.eye(5, 7, dtype=bool), slice_index=2),
])
def test_every_kind_of_prompt_crosses_the_wire_and_the_servers_validation_unchanged(prompt):
    message = SlicePromptMessage.model_validate(slice_prompt_to_message(prompt)).model_dump()
    back = slice_prompt_from_message(message)
    assert back == prompt  # axis, points, box, slice index
    if prompt.mask is None:
        assert back.mask is None
    else:
        np.testing.assert_array_equal(back.mask, prompt.mask)
