"""`adrag ask`: a question answered by the vision chat model from the top-k images, or by the model alone,
or both; printed with the cited paths and their scores, each answer an MLflow run in "ad-answers"."""

from __future__ import annotations

import re
import sys
import textwrap
import uuid

from assets_pkg.answers.operations import EXPERIMENT, Answer, answer_with_images, answer_without_images, log_answer
from assets_pkg.answers.questions import MODEL_ALONE, WITH_IMAGES
from assets_pkg.answers.vision_model import VisionSettings, build_vision_model
from assets_pkg.catalog.mirror import read_image_bytes
from assets_pkg.database_urls import masked
from assets_pkg.index.lance_index import open_reader
from orchestration.runner import Project
from orchestration.settings import VISION_MODEL_SETTINGS

# Terminal control characters in a model's text (an escape sequence could rewrite what is shown).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def run_ask(project: Project, settings: VisionSettings, question: str, k: int, modes: list[str]) -> int:
    model = build_vision_model(settings)
    assert model is not None, "checked by the caller"
    store = project.current["mlflow_tracking"].store(project.layout)
    comparison = uuid.uuid4().hex[:12] if len(modes) > 1 else None
    print(f"question: {question}")
    failed, run_ids = False, []
    for mode in modes:
        if mode == WITH_IMAGES:
            encoder = project.current["clip"].encoder()
            index = open_reader(project.layout.lance_dir, encoder.model_key)
            if index is None:
                print(f"adrag ask: no index for model {encoder.model_key}: run `adrag run` (or `adrag demo`) first",
                      file=sys.stderr)
                return 1
            try:
                answer = answer_with_images(question, k, model, index, encoder.encode_texts,
                                            lambda ids: read_image_bytes(project.layout.mirror_table, ids),
                                            clip_model=encoder.model_key)
            except LookupError as err:
                print(f"adrag ask: {err}: is the catalog empty? (`adrag run`)", file=sys.stderr)
                return 1
        else:
            answer = answer_without_images(question, model)
        run_id = log_answer(store, answer, comparison)
        run_ids.append(run_id)
        print_answer(answer)
        print(f"  MLflow run: {store.run_url(run_id) or run_id}")
        failed |= not answer.ok
    if comparison:
        where = store.compare_url(run_ids)
        print(f"\nside by side in MLflow: {where or masked(store.tracking_uri)}\n  (or, in the {EXPERIMENT!r} "
              f"experiment, filter: tags.comparison = \"{comparison}\")")
    return 1 if failed else 0


def print_answer(answer: Answer) -> None:
    if answer.mode == WITH_IMAGES:
        how = f"from the {len(answer.evidence)} retrieved images"
    else:
        how = "model alone, no images"
    print(f"\n[{answer.mode}] {how} ({answer.model}, {answer.seconds:.1f}s):")
    if not answer.ok:
        hint = (f" (does the model take images? {VISION_MODEL_SETTINGS['model']} names one that does)"
                if answer.mode == WITH_IMAGES and "HTTP 4" in (answer.reply.error or "") else "")
        print(f"  no answer: {answer.reply.error}{hint}")
        return
    for line in CONTROL.sub("", answer.reply.text).splitlines():
        print(textwrap.fill(line, 100, initial_indent="  ", subsequent_indent="  ") if line.strip() else "")
    by_path = {e.path: e for e in answer.evidence}
    if answer.citations.verified:
        print("  cited (retrieved; rank, score, path):")
        for path in answer.citations.verified:
            print(f"    {by_path[path].rank:>2}. {by_path[path].score:.4f}  {path}")
    elif answer.mode == WITH_IMAGES:
        print("  cited: none of the retrieved images")
    if answer.citations.unverified:
        shown = "it was shown no images" if answer.mode == MODEL_ALONE else "they are not among the images it was shown"
        print(f"  NOT RETRIEVED, do not trust (the model cited them; {shown}):")
        for path in answer.citations.unverified:
            print(f"        {CONTROL.sub('', path)}")
    if answer.uncited:
        print("  retrieved, not cited:")
        for e in answer.uncited:
            print(f"    {e.rank:>2}. {e.score:.4f}  {e.path}")
    for hit, why in answer.left_out:
        print(f"  retrieved, not sent: {hit.path} ({why})")
