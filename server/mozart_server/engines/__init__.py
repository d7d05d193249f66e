"""Engines: the Engine protocol, its implementations, and the factory that picks one."""

from mozart_server.engines.base import Engine, EngineOutputs
from mozart_server.engines.factory import EngineFactory, EngineKind

__all__ = ["Engine", "EngineFactory", "EngineKind", "EngineOutputs"]
