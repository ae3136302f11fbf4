"""Image-embedding throughput: the naive one-at-a-time loop against the `ClipEncoder` pipeline.

    .venv/bin/python benchmarks/bench_embeddings.py [--model ViT-B-32] [--images N] [--device auto]

Makes N photo-like 800x600 JPEGs (~120 KB, fixed seed) in memory and measures, in the same run:
  (a) naive: PIL decode + open_clip preprocess + encode, one image at a time, main process, fp32;
  (b) pipeline: `ClipEncoder.encode_images` (batched, decoding overlapped with the model);
  on CUDA also (c) GPU decode + preprocess only and (d) the model alone on ready pixels.
Prints img/s for each, the ratio (b)/(a) and the per-image cosine between (a) and (b) embeddings.
Random weights: no download. Exits non-zero when a cosine is below 0.99.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets_pkg.embeddings.encode import ClipEncoder, pick_device  # noqa: E402
from assets_pkg.embeddings.model import RANDOM, ClipSpec, load_clip  # noqa: E402
from assets_pkg.pictures import decode_upright_rgb  # noqa: E402

MIN_COSINE = 0.99


def photo_jpegs(n: int, size=(800, 600), seed: int = 0, distinct: int = 256) -> list[bytes]:
    """Photo-like JPEGs: smooth colour gradients plus sensor-like noise, about 120 KB each.
    At most `distinct` different images (making one takes ~30 ms), repeated to n."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    images = []
    for i in range(min(n, distinct)):
        base = rng.uniform(40, 215, 3)
        pixels = np.stack([base[c] + 60 * np.sin(xx / (40 + 9 * c + i % 7)) + 50 * np.cos(yy / (30 + 7 * c))
                           for c in range(3)], -1)
        pixels += rng.normal(0, 7.5, pixels.shape)
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(out, format="JPEG", quality=90)
        images.append(out.getvalue())
    return [images[i % len(images)] for i in range(n)]


def unit(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True)).cpu().numpy()


def naive(clip, device: str, images: list[bytes]) -> np.ndarray:
    vectors = []
    with torch.no_grad():
        for data in images:
            pixels = clip.preprocess(decode_upright_rgb(data)).unsqueeze(0).to(device)
            vectors.append(unit(clip.model.encode_image(pixels))[0])
    return np.stack(vectors)


def pipeline(encoder: ClipEncoder, images: list[bytes]) -> np.ndarray:
    batches = list(encoder.encode_images((str(i), data) for i, data in enumerate(images)))
    assert not any(b.failed for b in batches), [b.failed for b in batches]
    return np.concatenate([b.vectors for b in batches])


def timed(fn, sync: bool) -> tuple[float, object]:
    """(seconds, result) of fn(), waiting for the GPU on CUDA."""
    if sync:
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=None, help="default: 192 on CPU, 4096 on CUDA")
    parser.add_argument("--naive-images", type=int, default=None, help="images for the slow naive loop (default: all on CPU, 256 on CUDA)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of (a) and (b)")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    cuda = device.startswith("cuda")
    # 192 on a CPU: 6 batches of 32, so the pipeline's fill (the first batch decodes with nothing to
    # overlap it) weighs as it does in a catalog run, not half the run as with 2 batches.
    n = args.images or (4096 if cuda else 192)
    n_naive = min(n, args.naive_images or (256 if cuda else n))
    batch_size = args.batch_size or (256 if cuda else 32)
    clip = load_clip(ClipSpec(args.model, RANDOM), device)
    images = photo_jpegs(n)
    print(f"{args.model} (random weights) on {device}, torch threads {torch.get_num_threads()}; "
          f"{n} JPEGs 800x600, mean {np.mean([len(b) for b in images]) / 1024:.0f} KB; batch {batch_size}")

    encoder = ClipEncoder(clip, device=device, batch_size=batch_size)
    pipeline(encoder, images[: min(n, 2 * batch_size)])  # warm-up: threads, kernels, allocator
    naive(clip, device, images[:2])

    # Alternate the two in rounds, so a neighbour's load on a shared machine hits both alike.
    naive_s = pipeline_s = 0.0
    for _ in range(args.rounds):
        seconds, reference = timed(lambda: naive(clip, device, images[:n_naive]), cuda)
        naive_s += seconds
        seconds, vectors = timed(lambda: pipeline(encoder, images), cuda)
        pipeline_s += seconds
    naive_rate, rate = args.rounds * n_naive / naive_s, args.rounds * n / pipeline_s
    print(f"(a) naive loop        {naive_rate:9.1f} img/s  ({args.rounds} x {n_naive} images)")
    print(f"(b) ClipEncoder       {rate:9.1f} img/s  ({args.rounds} x {n} images)   ratio (b)/(a) = {rate / naive_rate:.2f}x")

    if cuda:
        from assets_pkg.embeddings.gpu_decode import GpuPreprocessor

        gpu = GpuPreprocessor(clip.model.visual.preprocess_cfg, device, lambda data: clip.preprocess(decode_upright_rgb(data)))
        batches = [images[i:i + batch_size] for i in range(0, n, batch_size)]

        def decode_only():
            for batch in batches:
                gpu.pixels(gpu.host_batch(batch))

        decode_rate = n / timed(decode_only, True)[0]
        print(f"(c) GPU decode+prep   {decode_rate:9.1f} img/s")
        pixels = torch.randn(batch_size, 3, clip.image_size, clip.image_size, device=device)

        def model_only():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                for _ in batches:
                    clip.model.encode_image(pixels)

        model_only()
        model_rate = len(batches) * batch_size / timed(model_only, True)[0]
        print(f"(d) model only (bf16) {model_rate:9.1f} img/s")
    encoder.close()

    cosines = np.sum(reference * vectors[:n_naive], axis=1)
    print(f"cosine naive vs pipeline per image: min {cosines.min():.6f}  max {cosines.max():.6f}")
    if cosines.min() < MIN_COSINE:
        print(f"FAIL: a cosine is below {MIN_COSINE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
