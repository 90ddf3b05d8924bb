"""The one dtype table (mtbranch.spec.dtypes) agrees with the libraries it stands for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save

from mtbranch.errors import MtbranchError
from mtbranch.io.safetensors_header import DTYPE_SIZES
from mtbranch.spec.dtypes import DTYPES, MANIFEST_DTYPES, dtype_named, numpy_views, torch_dtype
from mtbranch.spec.manifest import WeightsSpec


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_each_row_matches_safetensors_torch_and_numpy(name: str) -> None:
    row = DTYPES[name]
    t = getattr(torch, name)
    data = save({"x": torch.zeros(2, dtype=t)})
    n = int.from_bytes(data[:8], "little")
    assert f'"dtype":"{row.code}"' in data[8:8 + n].decode()  # safetensors writes this code for this torch dtype
    assert DTYPE_SIZES[row.code] == t.itemsize
    if row.numpy is not None:
        assert np.dtype(row.numpy).itemsize == t.itemsize
    if row.name in MANIFEST_DTYPES:
        assert torch_dtype(row.name) is t
        for alias in row.aliases:
            assert torch_dtype(alias) is t


def test_manifest_accepts_exactly_the_manifest_rows() -> None:
    base = {"sha256": "0" * 64, "num_parameters": 1}
    for name in DTYPES:
        if DTYPES[name].manifest:
            assert WeightsSpec.model_validate({**base, "dtype": name}).dtype == name
        else:
            with pytest.raises(ValueError):
                WeightsSpec.model_validate({**base, "dtype": name})
    assert set(numpy_views()) == {"F32", "F16", "F64"}


def test_unknown_dtype_is_a_user_error_naming_choices() -> None:
    with pytest.raises(MtbranchError) as exc:
        dtype_named("float8")
    assert "bf16" in (exc.value.hint or "")
    with pytest.raises(MtbranchError):
        torch_dtype("float64")  # readable in files, not a compute dtype mtbranch offers
