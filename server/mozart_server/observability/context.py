"""The call being served: its request id and the model version it uses (contextvars)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from mozart_server.observability.logs import request_id_var


@dataclass
class CallLabels:
    """The model a call used, filled in by the layer that resolves it, for request metrics."""

    model: str = ""
    version: str = ""


call_labels_var: contextvars.ContextVar[CallLabels | None] = contextvars.ContextVar(
    "mozart_call_labels", default=None
)


def note_model(name: str, version: str) -> None:
    """Records which model version the current call uses (for metrics and logs)."""
    labels = call_labels_var.get()
    if labels is not None:
        labels.model, labels.version = name, version


def current_request_id() -> str:
    """The request id of the call being served ("" outside a call)."""
    return request_id_var.get() or ""
