"""Train the tiny open_clip config on labelled images, so tests have a model that actually retrieves.

The suite's model is the tiny `adrag-tiny-clip` config with random weights: it runs the real loading
and encoding code but ranks photos at chance, so nothing that judges retrieval *quality* (the
`index_retrieval_beats_chance` gate) can be tested on it. This helper trains that same config from
its seeded random init, on the CPU in about 40 seconds, on (image, "a photo of a {label}") pairs
with open_clip's own model, tokenizer, preprocessing and contrastive loss (`open_clip.ClipLoss`), and
saves the state dict as a local checkpoint file. The pipeline then loads it through its ordinary
checkpoint path (`ClipSpec(weights=<file>)`, model key `adrag-tiny-clip/ckpt-<sha256>/...`). Nothing
is downloaded and no weights go into git: the file is written under the test's tmp directory.

It lives under tests/ because it is test support, not a feature: a 64-d model trained on a few
hundred drawings of six animals is no use on real photos, so users are not offered it (they point
ADRAG_CLIP_WEIGHTS at real open_clip weights). Training is reproducible: everything random is seeded,
the number of steps is fixed (never a time budget), and torch runs on one thread meanwhile, so the
floating-point sums do not depend on the machine's core count (one thread is also the fastest on a
small, shared CPU: two threads waited on each other behind other processes).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from PIL import Image

from assets_pkg.embeddings.model import TINY_MODEL

CAPTION = "a photo of a {label}"  # the query the retrieval gate (and campaign retrieval) sends
SHIFT = 6  # augmentation: random translation by up to this many pixels (reflect-padded), and mirror images


@dataclass(frozen=True)
class TrainingRun:
    checkpoint: Path
    steps: int
    first_loss: float  # mean over the first 20 steps
    last_loss: float  # mean over the last 20 steps


def train_tiny_clip(examples: Sequence[tuple[Path, str]], checkpoint: Path, steps: int = 800, groups: int = 8,
                    lr: float = 3e-3, seed: int = 0) -> TrainingRun:
    """Train `adrag-tiny-clip` from its random init on (image file, label) pairs; save its state dict.

    Images are preprocessed once with the model's own (inference) transform, the one the pipeline
    applies, then augmented per step with mirror images and small shifts. A step's batch is `groups`
    contrastive batches, each holding one image of every label (drawn at random, seeded) against the
    captions "a photo of a {label}"; the loss is their mean `ClipLoss`. One image per label per
    contrastive batch, because the loss treats every other pair as a negative: two images of one
    label in a batch would each be pushed away from their own caption. The images of all groups go
    through the image tower together, the captions once. AdamW with a one-cycle learning rate.

    The token embedding table (49,408 x 64, most of the model's weights, of which these captions use
    a dozen rows) stays at its random init: updating all of it with AdamW every step took half the
    step time, and a fixed random vector per word is all a handful of fixed captions need.
    """
    paths_by_label: dict[str, list[Path]] = {}
    for path, label in examples:
        paths_by_label.setdefault(label, []).append(Path(path))
    labels = sorted(paths_by_label)
    if len(labels) < 2:
        raise ValueError("contrastive training needs images of at least two labels")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL, pretrained=None)
            pixels = [torch.stack([preprocess(_rgb(p)) for p in paths_by_label[label]]) for label in labels]
            texts = open_clip.get_tokenizer(TINY_MODEL)([CAPTION.format(label=label) for label in labels])
            losses = _train(model, pixels, texts, steps, groups, lr, random.Random(seed))
    finally:
        torch.set_num_threads(threads)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), checkpoint)
    window = min(20, len(losses))
    return TrainingRun(checkpoint=checkpoint, steps=steps, first_loss=sum(losses[:window]) / window,
                       last_loss=sum(losses[-window:]) / window)


def _train(model, pixels: list[torch.Tensor], texts: torch.Tensor, steps: int, groups: int, lr: float,
           picks: random.Random) -> list[float]:
    model.token_embedding.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = open_clip.ClipLoss()
    model.train()
    losses = []
    for _ in range(steps):
        batch = torch.stack([images[picks.randrange(len(images))] for _ in range(groups) for images in pixels])
        image_features = model.encode_image(_augment(batch, picks), normalize=True).split(len(pixels))
        text_features = model.encode_text(texts, normalize=True)
        scale = model.logit_scale.exp()
        loss = torch.stack([loss_fn(group, text_features, scale) for group in image_features]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _augment(batch: torch.Tensor, picks: random.Random) -> torch.Tensor:
    """Mirror each image with probability 1/2 and shift the batch by up to SHIFT pixels."""
    flip = torch.tensor([picks.random() < 0.5 for _ in range(len(batch))])
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    padded = torch.nn.functional.pad(batch, (SHIFT,) * 4, mode="reflect")
    dx, dy = picks.randint(0, 2 * SHIFT), picks.randint(0, 2 * SHIFT)
    return padded[..., dy:dy + batch.shape[-2], dx:dx + batch.shape[-1]]


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
