"""QuantSpec validation, round trips and candidate parsing."""

from __future__ import annotations

import pytest

from profiling.errors import BadInput
from profiling.quant.spec import (
    PerChannel,
    PerGroup,
    PerTensor,
    QuantSpec,
    granularity_from_dict,
    parse_candidate,
)


def test_defaults_are_float_and_ptq4sam_layout() -> None:
    spec = QuantSpec()
    assert spec.is_float and spec.id == "w16a16"
    assert spec.w_granularity == PerChannel(0) and spec.a_granularity == PerTensor()


def test_parse_candidate() -> None:
    assert parse_candidate("w4a8") == QuantSpec(4, 8)
    assert parse_candidate("W2A16", w_symmetric=True) == QuantSpec(2, 16, w_symmetric=True)
    assert parse_candidate("w6a6").id == "w6a6"


@pytest.mark.parametrize("cid", ["w7a8", "w4a5", "w4", "4a8", "w1a8", "w32a32", ""])
def test_bad_candidates_list_allowed_bits(cid: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_candidate(cid)
    msg = str(err.value)
    assert "[2, 3, 4, 5, 6, 8, 16]" in msg or "w_bits" in msg or "a_bits" in msg


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"w_bits": 7}, "w_bits"),
        ({"a_bits": 2}, "a_bits"),
        ({"w_bits": True}, "w_bits"),
        ({"w_method": "l1"}, "w_method"),
        ({"w_symmetric": 1}, "w_symmetric"),
        ({"a_granularity": "per_tensor"}, "a_granularity"),
    ],
)
def test_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(BadInput, match=field):
        QuantSpec(**kwargs)


def test_group_size_validated() -> None:
    with pytest.raises(BadInput, match="group_size"):
        PerGroup(0)


def test_dict_round_trip() -> None:
    spec = QuantSpec(3, 8, w_symmetric=True, w_granularity=PerGroup(32, 1), w_method="mse")
    assert QuantSpec.from_dict(spec.to_dict()) == spec
    assert granularity_from_dict({"type": "per_channel", "axis": 1}) == PerChannel(1)


def test_from_dict_rejects_unknown() -> None:
    with pytest.raises(BadInput, match="bits"):
        QuantSpec.from_dict({"bits": 4})
    with pytest.raises(BadInput, match="w_granularity"):
        QuantSpec.from_dict({"w_granularity": {"type": "per_row"}})


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        QuantSpec().w_bits = 4  # type: ignore[misc]
