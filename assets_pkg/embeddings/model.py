"""Load an open_clip model from a named pretrained tag, a local checkpoint, or (on request) random weights.

The model key names the architecture, the weights and the preprocessing, so vectors of two models
never mix: `ViT-B-32/laion2b_s34b_b79k/224px-bicubic-shortest`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch

CONFIG_DIR = Path(__file__).parent / "configs"
TINY_MODEL = "adrag-tiny-clip"  # 64-d random-weight config for tests and offline smoke runs
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RANDOM_WEIGHTS_SEED = 0

open_clip.add_model_config(CONFIG_DIR)


class WeightsUnavailable(RuntimeError):
    """Named weights are neither cached nor downloadable; the message says how to point at a file."""


RANDOM = "random"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ClipSpec:
    """Which model: an open_clip architecture and its weights.

    `weights` is an open_clip pretrained tag (downloaded on first use), a path to a local checkpoint
    file, or "random" (seeded random init, only when asked: tests and offline smoke runs).
    """

    model_name: str = DEFAULT_MODEL
    weights: str = DEFAULT_PRETRAINED

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM

    @property
    def checkpoint(self) -> Path | None:
        looks_like_file = "/" in self.weights or self.weights.endswith(CHECKPOINT_SUFFIXES)
        return Path(self.weights).expanduser() if looks_like_file else None

    def weights_tag(self) -> str:
        if self.random_weights:
            return f"random-seed{RANDOM_WEIGHTS_SEED}"
        if self.checkpoint:
            if not self.checkpoint.is_file():
                raise WeightsUnavailable(f"checkpoint file {self.checkpoint} does not exist")
            return "ckpt-" + file_sha256(self.checkpoint)[:16]
        if not self.weights:
            raise ValueError("choose weights: an open_clip pretrained tag, a checkpoint file path, or 'random'")
        return self.weights


@dataclass
class LoadedClip:
    model: torch.nn.Module
    preprocess: object  # torchvision transform: PIL image -> tensor
    tokenizer: object
    model_key: str
    dim: int
    image_size: int


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def model_key(model_name: str, weights_tag: str, preprocess_cfg: dict) -> str:
    size = preprocess_cfg["size"]
    size = size[0] if isinstance(size, (tuple, list)) else size
    return f"{model_name}/{weights_tag}/{size}px-{preprocess_cfg['interpolation']}-{preprocess_cfg['resize_mode']}"


def load_clip(spec: ClipSpec, device: str = "cpu") -> LoadedClip:
    if spec.model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {spec.model_name!r}")
    tag = spec.weights_tag()
    if spec.random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(spec.model_name, pretrained=None)
    elif spec.checkpoint:
        model, _, preprocess = open_clip.create_model_and_transforms(spec.model_name, pretrained=str(spec.checkpoint))
    else:
        ensure_downloadable(spec.model_name, spec.weights)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(spec.model_name, pretrained=spec.weights)
        except RuntimeError as err:
            raise WeightsUnavailable(_how_to_point_at_weights(spec, str(err))) from None
    model.eval().to(device)
    tokenizer = open_clip.get_tokenizer(spec.model_name)
    with torch.inference_mode():
        dim = int(model.encode_text(tokenizer(["a"]).to(device)).shape[-1])
    cfg = model.visual.preprocess_cfg
    size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer,
                      model_key=model_key(spec.model_name, tag, cfg), dim=dim, image_size=int(size))


def check_weights(spec: ClipSpec) -> None:
    """What `load_clip` would refuse, found in seconds without building the model: an unknown
    architecture, a checkpoint file that is not there, named weights neither cached nor downloadable."""
    if spec.model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {spec.model_name!r}")
    if spec.random_weights:
        return
    if spec.checkpoint:
        if not spec.checkpoint.is_file():
            raise WeightsUnavailable(_how_to_point_at_weights(spec, f"checkpoint file {spec.checkpoint} does not exist"))
        return
    spec.weights_tag()  # no weights named at all
    ensure_downloadable(spec.model_name, spec.weights)


def ensure_downloadable(model_name: str, tag: str) -> None:
    """Fail in seconds, not after minutes of hub retries, when named weights cannot be had."""
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise ValueError(f"open_clip has no pretrained tag {tag!r} for {model_name}; "
                         f"known: {', '.join(open_clip.list_pretrained_tags_by_model(model_name))}")
    if _cached_locally(cfg):
        return
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co") if cfg.get("hf_hub") else cfg["url"]).hostname
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _reachable(host):
        raise WeightsUnavailable(_how_to_point_at_weights(
            ClipSpec(model_name, tag), f"the weights are not cached and {host} cannot be reached"))


def _cached_locally(cfg: dict) -> bool:
    if not cfg.get("hf_hub"):
        return False
    from huggingface_hub import try_to_load_from_cache

    repo = cfg["hf_hub"].rstrip("/")
    return any(isinstance(try_to_load_from_cache(repo, name), str)
               for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))


def _reachable(host: str | None, timeout_s: float = 3.0) -> bool:
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _how_to_point_at_weights(spec: ClipSpec, why: str) -> str:
    return (f"cannot load open_clip weights {spec.model_name}/{spec.weights}: {why}. "
            "Download the open_clip checkpoint where there is network and point at the file with "
            "ADRAG_CLIP_WEIGHTS=/path/to/open_clip_model.safetensors (ADRAG_CLIP_MODEL names its architecture), "
            f"or run the plumbing offline on random weights: ADRAG_CLIP_MODEL={TINY_MODEL} ADRAG_CLIP_WEIGHTS={RANDOM} "
            "(or `adrag --offline demo`).")
