"""probe: latents, alignment metrics and cross-embodiment retrieval for human/robot co-trained models.

Data flows one way, each stage a subpackage that imports only the stages below it:
readers -> extraction -> latent store -> measure / projection / retrieval -> report
/ dashboard. The store and the :class:`Latents` value are the contract between the
parts. The names below are the public face, loaded on first use (``import probe``
loads neither torch nor the metrics).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "ProbeError": "probe.errors",
    "Latents": "probe.latents",
    "Store": "probe.store.store",
    "StoreWriter": "probe.store.writer",
    "open_store": "probe.store.store",
    "write_store": "probe.store.writer",
    "ExtractConfig": "probe.extraction.config",
    "PassConfig": "probe.extraction.config",
    "SamplingConfig": "probe.extraction.sampling",
    "ModelConfig": "probe.model.config",
    "extract": "probe.extraction.run",
    "evaluate": "probe.measure.suite",
    "ProjectionConfig": "probe.projection.layout",
    "project": "probe.projection.project",
    "build_index": "probe.retrieval.index",
    "Retriever": "probe.retrieval.retriever",
    "build_report": "probe.report.build",
    "ReportConfig": "probe.report.config",
    "open_dataset": "probe.readers",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
