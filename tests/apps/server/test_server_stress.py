"""The bounded stress run of issue 10 (see tests/support/memory_stress.py): 8 clients upload volumes that declare the
largest size the server accepts while 4 others segment, for 20 s on loopback. The server's resident memory stays
within its budget above its resting size, every refusal is a 4xx with a reason, there is no 5xx, and every mask
answered is right. Alongside them run one client per attack of issue 18: 300 MiB bodies without a key (401
before the body is read), mask boxes with an empty side holding a zlib bomb (422, nothing inflated) and uploads
that stall after their first MiB (408 after the read timeout). The figures are printed (pytest -s shows them)."""

from __future__ import annotations

import sys

import pytest

from memory_stress import MIB, run_stress


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's memory from /proc")
def test_memory_budget_holds_under_parallel_uploads_at_the_declared_maximum_and_attacks():
    figures = run_stress(load_seconds=20.0, hostile=True)
    print("\n" + figures.summary())
    assert not figures.transport_errors, figures.transport_errors[:3]
    assert figures.server_errors == 0, figures.statuses
    assert not figures.refusals_without_reason, figures.refusals_without_reason[:3]
    assert figures.statuses[201] >= 8 and figures.statuses[429] >= 1, figures.statuses  # the budget was reached
    attacks = {status: figures.statuses[status] for status in (401, 422, 408)}
    assert all(attacks.values()), figures.statuses  # each attack was refused by its 4xx
    assert figures.masks_checked >= 4 and not figures.wrong_masks, figures.wrong_masks
    assert figures.peak_growth_bytes <= figures.budget_bytes, \
        f"the server grew by {figures.peak_growth_bytes / MIB:.0f} MiB over its budget of {figures.budget_bytes / MIB:.0f}"
