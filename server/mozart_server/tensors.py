"""Types every layer shares: float arrays and tensor signatures (nothing else is imported here)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

FloatArray = npt.NDArray[np.float32]


class TensorSpec(BaseModel):
    """One graph input or output as the manifest (or the graph) declares it."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str
    shape: tuple[int, ...]
