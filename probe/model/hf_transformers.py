"""Hugging Face ``transformers`` checkpoints: a directory with ``config.json`` (``architectures`` /
``model_type``) and its weights, opened with ``AutoModel.from_pretrained(dir, local_files_only=True)``.

Their default adapter, :class:`TransformersImageAdapter`, feeds frames as ``pixel_values`` at the model's
``image_size`` (its vision config's for a vision-text model), normalised with the ``image_mean`` /
``image_std`` of a ``preprocessor_config.json`` beside the weights when there is one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from probe.errors import CheckpointError, ConfigError, MissingDependencyError
from probe.model.adapters import ImageAdapter, ModelInputs
from probe.model.checkpoints import TRANSFORMERS_KIND, LoadedModel, file_sha256
from probe.model.state_dicts import first_line


def load_transformers_model(path: Path, config: Mapping[str, Any], device: str) -> LoadedModel:
    """A ``transformers`` model directory as an eval-mode ``AutoModel`` on ``device``, offline."""
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(f"'{path}' is a Hugging Face transformers checkpoint (model_type "
                                     f"{config.get('model_type')!r}); install transformers to open it: "
                                     "pip install transformers") from exc
    try:
        model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"transformers cannot load '{path}' ({type(exc).__name__}: {first_line(exc)}); "
                              "check that its weights are complete and its model_type is known to the installed "
                              "transformers") from exc
    model.eval().to(device)
    weights = next((path / n for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
                    if (path / n).is_file()), path / "config.json")
    return LoadedModel(model, TRANSFORMERS_KIND, str(path), file_sha256(weights), None, dict(config),
                       default_adapter="transformers")


def image_normalisation(model: Any) -> dict[str, Any]:
    """``image_mean`` / ``image_std`` of the ``preprocessor_config.json`` beside the model's weights, if any."""
    file = Path(str(getattr(model, "name_or_path", "") or "")) / "preprocessor_config.json"
    try:
        extra = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (OSError, ValueError):
        return {}
    return {k: extra[k] for k in ("image_mean", "image_std") if isinstance(extra.get(k), list) and len(extra[k]) == 3}


def image_size_of(config: Any) -> int | None:
    for cfg in (config, getattr(config, "vision_config", None)):
        size = getattr(cfg, "image_size", None)
        if size:
            return int(size if isinstance(size, int) else size[0])
    return None


class TransformersImageAdapter(ImageAdapter):
    """Frames as ``model(pixel_values=...)`` at the model's image size (see the module docstring)."""

    name = "transformers"

    def __init__(self, model: Any, *, size: int | Sequence[int] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, video_key: str | None = None) -> None:
        config = getattr(model, "config", None)
        size = size or image_size_of(config)
        if size is None:
            raise ConfigError(f"the transformers model ({type(model).__name__}) has no image_size in its config; "
                              "it is not an image model: pass --adapter-kwargs '{\"size\": 224}' if it is, or use "
                              "--embed for other inputs")
        norm = image_normalisation(model)
        super().__init__(model, size=size, mean=mean or norm.get("image_mean"), std=std or norm.get("image_std"),
                         video_key=video_key)

    def forward(self, model: Any, inputs: ModelInputs) -> Any:
        (pixels,) = inputs.args
        if hasattr(model, "get_image_features") and hasattr(model, "vision_model"):  # CLIP / SigLIP: the image tower
            return model.vision_model(pixel_values=pixels)
        return model(pixel_values=pixels)
