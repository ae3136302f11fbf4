"""A self-contained demo image catalog, drawn procedurally so the demo runs offline.

The pipeline wants "a brand's folder of real photos". For a demo with no downloads we paint simple
illustrated photos instead: an animal drawn from ellipses and polygons, placed in a varied scene,
softened and given film grain so the files behave like photos (realistic JPEG sizes, no flat
colour). Every picture is a pure function of (seed, subject, index, size), so the catalog is
byte-for-byte reproducible and a re-run leaves existing files untouched.

Layout written under `data_dir` (the sub-folder name is the label the catalog scan picks up):

    images/<subject>/<subject>-01.jpg, <subject>-02.png, ...   (formats alternate)
    brand/brand.png                                             (RGBA logo badge)

`adrag demo`, the tests and the benchmarks use it; the pipeline itself never imports it.
"""

from demo_catalog.brand import make_brand_image
from demo_catalog.catalog import SUBJECTS, DemoCatalog, make_demo_catalog
from demo_catalog.photo import draw_demo_photo

__all__ = ["SUBJECTS", "DemoCatalog", "draw_demo_photo", "make_brand_image", "make_demo_catalog"]
