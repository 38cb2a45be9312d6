"""Small LeRobot policy checkpoints built at test time with LeRobot's own classes (``save_pretrained``).

Nothing is downloaded: backbones start from random weights (``pretrained_backbone_weights=None``) and
SmolVLA's VLM is a tiny local config with a word-level tokenizer written beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FRONT = "observation.images.front"
STATE = "observation.state"


def features(cameras: Mapping[str, tuple[int, int, int]], state_dim: int, action_dim: int) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {k: PolicyFeature(type=FeatureType.VISUAL, shape=tuple(s)) for k, s in cameras.items()}
    if state_dim:
        inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
    return inputs, {"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))}


def stats(cameras: Mapping[str, tuple[int, int, int]], state_dim: int, action_dim: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for k in cameras:
        out[k] = {"mean": torch.full((3, 1, 1), 0.4), "std": torch.full((3, 1, 1), 0.25),
                  "min": torch.zeros(3, 1, 1), "max": torch.ones(3, 1, 1)}
    for key, dim in (("observation.state", state_dim), ("action", action_dim)):
        if dim:
            mean = torch.randn(dim, generator=g)
            out[key] = {"mean": mean, "std": torch.rand(dim, generator=g) + 0.5, "min": mean - 2, "max": mean + 2}
    return out


def save(policy: Any, cfg: Any, out: Path, data_stats: dict, *, device: str | None = None) -> Path:
    """``policy`` and its pre/post-processors written to ``out`` as ``lerobot-train`` does; ``device`` rewrites the
    saved configs' device (e.g. ``cuda``: a checkpoint trained on a GPU)."""
    from lerobot.policies.factory import make_pre_post_processors

    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    pre, post = make_pre_post_processors(cfg, dataset_stats=data_stats)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    if device is not None:
        config = json.loads((out / "config.json").read_text())
        config["device"] = device
        (out / "config.json").write_text(json.dumps(config, indent=2))
        for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
            pipeline = json.loads((out / name).read_text())
            for step in pipeline["steps"]:
                if "device" in step.get("config", {}):
                    step["config"]["device"] = device
            (out / name).write_text(json.dumps(pipeline, indent=2))
    return out


def act_checkpoint(out: Path, *, cameras: Mapping[str, tuple[int, int, int]] | None = None, state_dim: int = 8,
                   action_dim: int = 5, device: str | None = None, seed: int = 0) -> Path:
    """A random ACT policy (ResNet-18 backbone, a small transformer) saved to ``out``."""
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    cameras = dict(cameras or {FRONT: (3, 64, 64)})
    inputs, outputs = features(cameras, state_dim, action_dim)
    cfg = ACTConfig(input_features=inputs, output_features=outputs, device="cpu", pretrained_backbone_weights=None,
                    dim_model=32, n_heads=2, dim_feedforward=64, n_encoder_layers=2, n_decoder_layers=1,
                    chunk_size=8, n_action_steps=8, latent_dim=8, n_vae_encoder_layers=1)
    torch.manual_seed(seed)
    return save(ACTPolicy(cfg), cfg, out, stats(cameras, state_dim, action_dim), device=device)


def diffusion_checkpoint(out: Path, *, cameras: Mapping[str, tuple[int, int, int]] | None = None,
                         state_dim: int = 8, action_dim: int = 5, seed: int = 0) -> Path:
    """A random Diffusion policy (two observation steps, a small U-Net) saved to ``out``."""
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    cameras = dict(cameras or {FRONT: (3, 64, 64)})
    inputs, outputs = features(cameras, state_dim, action_dim)
    cfg = DiffusionConfig(input_features=inputs, output_features=outputs, device="cpu",
                          pretrained_backbone_weights=None, use_group_norm=True, crop_shape=(56, 56),
                          n_obs_steps=2, horizon=8, n_action_steps=4, down_dims=(16, 32), kernel_size=3,
                          n_groups=4, diffusion_step_embed_dim=16, spatial_softmax_num_keypoints=8,
                          num_inference_steps=2)
    torch.manual_seed(seed)
    return save(DiffusionPolicy(cfg), cfg, out, stats(cameras, state_dim, action_dim))


VLM_WORDS = ("pick", "place", "push", "open", "the", "a", "to", "and", "on", "it", "cup", "block", "drawer",
             "plate", "target", "up", "yellow", "bottle", "table", ".")


def tiny_vlm(out: Path) -> Path:
    """A SmolVLM config (one vision layer, two text layers) with a word-level tokenizer and its processor,
    written to ``out``: what SmolVLA reads as ``vlm_model_name``, so that nothing comes from the hub."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor,
                              SmolVLMVideoProcessor)

    special = ["<pad>", "<unk>", "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
    vocab = {w: i for i, w in enumerate([*special, *VLM_WORDS, "\n"])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="removed")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                              "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
    config = SmolVLMConfig(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                     "max_position_embeddings": 256},
        scale_factor=2, image_token_id=vocab["<image>"], pad_token_id=0)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    image_processor = SmolVLMImageProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                            do_image_splitting=False)
    SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(),
                     image_seq_len=4).save_pretrained(out)
    return out


def smolvla_checkpoint(out: Path, vlm: Path, *, cameras: Mapping[str, tuple[int, int, int]] | None = None,
                       state_dim: int = 8, action_dim: int = 5, seed: int = 0) -> Path:
    """A random SmolVLA policy on the tiny local VLM of :func:`tiny_vlm`, saved to ``out``."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    cameras = dict(cameras or {FRONT: (3, 64, 64)})
    inputs, outputs = features(cameras, state_dim, action_dim)
    cfg = SmolVLAConfig(input_features=inputs, output_features=outputs, device="cpu", vlm_model_name=str(vlm),
                        load_vlm_weights=False, resize_imgs_with_padding=(32, 32), chunk_size=4, n_action_steps=4,
                        max_state_dim=16, max_action_dim=16, tokenizer_max_length=12, num_vlm_layers=2,
                        num_steps=3)
    torch.manual_seed(seed)
    return save(SmolVLAPolicy(cfg), cfg, out, stats(cameras, state_dim, action_dim))
