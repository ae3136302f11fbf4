"""Ad quality check: the time CLIP scoring adds per ad on the CPU, against making the ad with the local
compositor (the cheapest generator; a Replicate prediction takes seconds), in the same run.

For each model (the tiny random-weight test config and open_clip ViT-B-32 with random weights: the
same compute as the real weights), over the demo catalog's photos: compositor time per ad, then
`quality.score_ad` per ad (encode the ad, its seed and the brand image, and the subject text; what the
campaign step does once per ad made), p50 and p95, and the ratio of p50s.

    .venv/bin/python benchmarks/bench_ad_quality.py [--ads 20] [--models adrag-tiny-clip,ViT-B-32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=20)
    parser.add_argument("--models", default="adrag-tiny-clip,ViT-B-32")
    args = parser.parse_args()

    import torch

    from assets_pkg.campaigns.generators.base import GenerationRequest
    from assets_pkg.campaigns.generators.compositor import LocalCompositor
    from assets_pkg.campaigns.quality import score_ad
    from assets_pkg.embeddings.encode import ClipEncoder
    from assets_pkg.embeddings.model import RANDOM, ClipSpec, load_clip
    from demo_catalog import make_demo_catalog

    catalog = make_demo_catalog(Path(tempfile.mkdtemp(prefix="adrag-quality-bench-")), images_per_subject=4)
    photos = sorted(catalog.image_paths)[:args.ads]
    brand = catalog.brand_image.read_bytes()
    compositor = LocalCompositor()
    print(f"{len(photos)} ads from demo photos (640x480), compositor 1024x1024; torch threads {torch.get_num_threads()}")

    made, making = [], []
    for photo in photos:
        seed = photo.read_bytes()
        started = time.perf_counter()
        ad = compositor.generate(GenerationRequest(seed, brand, "prompt", "Real food for real pets")).png
        making.append(time.perf_counter() - started)
        made.append((photo.parent.name, seed, ad))
    make_p50 = statistics.median(making)
    print(f"\n{'step':<34}{'p50 ms':>9}{'p95 ms':>9}{'x compositor':>14}")
    print(f"{'make the ad (local compositor)':<34}{make_p50 * 1000:>9.1f}{percentile(making, 0.95) * 1000:>9.1f}"
          f"{1.0:>14.2f}")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        encoder = ClipEncoder(load_clip(ClipSpec(name, RANDOM)), batch_size=4)
        score_ad(encoder, made[0][2], made[0][1], brand, made[0][0])  # warm-up
        scoring = []
        for subject, seed, ad in made:
            started = time.perf_counter()
            score_ad(encoder, ad, seed, brand, subject)
            scoring.append(time.perf_counter() - started)
        encoder.close()
        p50 = statistics.median(scoring)
        print(f"{'score it: ' + name:<34}{p50 * 1000:>9.1f}{percentile(scoring, 0.95) * 1000:>9.1f}"
              f"{p50 / make_p50:>14.2f}")


if __name__ == "__main__":
    main()
