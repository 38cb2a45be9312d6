"""The on-disk format of a retrieval index: file names, the manifest ``index.json`` and its reader.

Layout (format ``probe-index``, version 1)::

    INDEX_DIR/
      index.json     manifest: store path and fingerprint, layer, embodiment, metric,
                     normalisation, kind and resolved parameters, n, build time
      index.faiss    the FAISS index (faiss.write_index), ids 0..n-1
      rows.npy       int64 (n,): row positions in the store of index ids 0..n-1

Building an index is :mod:`probe.retrieval.index`; opening and searching one is
:mod:`probe.retrieval.index_search`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metrics.index import IndexKind
from metrics.knn import Metric
from probe.errors import IndexFileError
from probe.validate import OutputKind

__all__ = ["FORMAT", "INDEX_FILE", "INDEX_KIND", "MANIFEST", "ROWS_FILE", "VERSION", "IndexManifest", "read_manifest"]

FORMAT = "probe-index"
VERSION = 1
MANIFEST = "index.json"
INDEX_FILE = "index.faiss"
ROWS_FILE = "rows.npy"
INDEX_KIND = OutputKind("index directory", MANIFEST, FORMAT)  # what --overwrite may replace


@dataclass(frozen=True)
class IndexManifest:
    """What ``index.json`` records about an index."""

    store_path: str
    store_fingerprint: str
    layer: str
    dim: int
    embodiment: str
    metric: Metric
    kind: IndexKind
    params: dict[str, Any]
    n: int
    created: str = ""
    build_seconds: float = 0.0
    sample_ids_sha256: str = ""
    normalization: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", Metric(self.metric))
        object.__setattr__(self, "kind", IndexKind(self.kind))
        if not self.normalization:
            object.__setattr__(self, "normalization", "l2" if self.metric is Metric.COSINE else "none")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metric"], out["kind"] = self.metric.value, self.kind.value
        return {"format": FORMAT, "version": VERSION, **out, "index_file": INDEX_FILE, "rows_file": ROWS_FILE}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexManifest:
        keys = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in keys})


def read_manifest(path: str | Path) -> IndexManifest:
    """Read and check ``index.json`` of an index directory."""
    path = Path(path)
    if not path.exists():
        raise IndexFileError(f"index directory '{path}' does not exist; build one with 'probe index STORE --out {path}'")
    file = path / MANIFEST
    if not file.is_file():
        raise IndexFileError(f"'{path}' is not an index directory: {MANIFEST} is missing; "
                             "build one with 'probe index STORE --out DIR'")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFileError(f"'{file}' is not valid JSON ({exc}); the index is corrupt: rebuild it "
                             "with 'probe index ... --overwrite'") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise IndexFileError(f"'{file}' is not a {FORMAT} manifest; rebuild the index with 'probe index'")
    if raw.get("version") != VERSION:
        raise IndexFileError(f"index '{path}' has format version {raw.get('version')!r}, this toolkit reads "
                             f"version {VERSION}; rebuild it with 'probe index ... --overwrite'")
    try:
        return IndexManifest.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise IndexFileError(f"'{file}' is incomplete or invalid ({exc}); rebuild the index") from exc
