"""`adrag ask` as a user runs it, through the real `openai` client against the local chat stand-in, over a
catalog the real pipeline materialized (tiny CLIP) and the real MLflow store: what each request carried
(k images, or none), how citations are checked, what MLflow keeps (two runs side by side for --compare),
where the key goes (to the server only), and the one-line errors."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys

import dagster as dg
import pytest
from conftest import REPO, SEGMENTS_YAML, tiny_resources, write_photo
from mlflow import MlflowClient
from openai_standin import OpenAIStandIn, image_urls, text_answer
from PIL import Image
from test_pipeline import refresh

from assets_pkg.answers.citations import check_citations
from assets_pkg.answers.evidence import IMAGE_MAX_SIDE, image_data_url
from assets_pkg.answers.operations import EXPERIMENT, question_id
from assets_pkg.answers.vision_model import VisionSettings, safe_server
from assets_pkg.index.lance_index import open_reader
from demo_catalog import make_brand_image
from orchestration import cli
from orchestration.settings import vision_model_values

SENTINEL_KEY = "sk-SENTINEL-vision-key-never-stored-0123456789"
SHOWN = re.compile(r"^\[(.+)\] \(rank (\d+), similarity (-?[\d.]+)\)$")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """12 photos over dog/cat/parrot, through the real catalog graph: mirror, tiny-CLIP embeddings, index."""
    root = tmp_path_factory.mktemp("ask") / "data"
    for n, label in enumerate(["dog", "cat", "parrot"]):
        for i in range(4):
            write_photo(root / "images" / label / f"{label}-{i}{'.png' if i % 2 else '.jpg'}", seed=10 * n + i)
    make_brand_image(root / "brand" / "brand.png")
    (root / "segments.yaml").write_text(SEGMENTS_YAML)
    with dg.instance_for_test() as instance:
        refresh(tiny_resources(root), instance)
    return root


@pytest.fixture
def environ(monkeypatch):
    """A clean environment for in-process CLI calls; the test sets the model's settings."""
    for name in [n for n in os.environ if n.startswith(("ADRAG_", "MLFLOW_", "DAGSTER_HOME"))]:
        monkeypatch.delenv(name)
    return monkeypatch


def ask(capsys, data_dir, *args) -> tuple[int, str, str]:
    code = cli.main(["--data-dir", str(data_dir), "--offline", "ask", *args])
    out, err = capsys.readouterr()
    return code, out, err


def use_model(environ, api: OpenAIStandIn, key: str = SENTINEL_KEY) -> None:
    environ.setenv("ADRAG_LLM_BASE_URL", api.base_url)
    environ.setenv("ADRAG_VISION_MODEL", "standin-vision")
    environ.setenv("ADRAG_LLM_MODEL", "standin-text-only")  # the vision model setting wins
    environ.setenv("ADRAG_LLM_API_KEY", key)


def shown_paths(body: dict) -> list[tuple[str, int, float]]:
    """(path, rank, score) of each image the request introduced, in order."""
    texts = [p["text"] for m in body["messages"] if isinstance(m["content"], list)
             for p in m["content"] if p["type"] == "text"]
    return [(m[1], int(m[2]), float(m[3])) for m in map(SHOWN.match, texts) if m]


def runs_for(data_dir, question: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], f"tags.question_id = '{question_id(question)}'",
                              order_by=["attributes.start_time ASC"])


def artifact_text(data_dir, run, name: str) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    with open(client.download_artifacts(run.info.run_id, name, str(data_dir.parent / run.info.run_id)), "r") as f:
        return f.read()


def test_an_answer_from_the_images_cites_retrieved_paths_and_the_request_carried_k_images(
        catalog, environ, capsys, clip_encoder):
    question = "which photos show a dog outdoors?"

    def cite_first_and_third(body):
        named = [path for path, _, _ in shown_paths(body)]
        return text_answer(f"Two photos show a dog outside: [{named[0]}] and [{named[2]}].")

    with OpenAIStandIn([cite_first_and_third]) as api:
        use_model(environ, api)
        code, out, err = ask(capsys, catalog, question, "-k", "3")
    assert code == 0, out + err
    [body] = api.bodies()
    assert body["model"] == "standin-vision"
    system = body["messages"][0]["content"]
    assert "only from what these photos show" in system and "square brackets" in system

    # k images, inlined as bounded JPEG data URLs, each after its path: the index's top k for the question.
    urls = image_urls(body)
    assert len(urls) == 3
    for url in urls:
        assert url.startswith("data:image/jpeg;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert picture.format == "JPEG" and max(picture.size) <= IMAGE_MAX_SIDE
    expected = open_reader(catalog / "lance", clip_encoder.model_key).search(
        clip_encoder.encode_texts([question])[0], k=3)
    shown = shown_paths(body)
    assert [(p, r) for p, r, _ in shown] == [(h.path, n) for n, h in enumerate(expected, start=1)]

    first, second, third = shown
    cited, uncited = out.split("cited (retrieved; rank, score, path):\n")[1].split("  retrieved, not cited:\n")
    assert cited.splitlines() == [f"     1. {expected[0].score:.4f}  {first[0]}",
                                  f"     3. {expected[2].score:.4f}  {third[0]}"]
    assert uncited.splitlines()[0] == f"     2. {expected[1].score:.4f}  {second[0]}"
    assert "NOT RETRIEVED" not in out and SENTINEL_KEY not in out + err
    assert f"Two photos show a dog outside: [{first[0]}] and [{third[0]}]." in out

    [run] = runs_for(catalog, question)
    assert run.info.status == "FINISHED"
    assert {k: run.data.params[k] for k in ("question", "mode", "k", "model")} == {
        "question": question, "mode": "rag", "k": "3", "model": "standin-vision"}
    assert run.data.params["clip_model"] == clip_encoder.model_key
    assert run.data.metrics["images_sent"] == 3 and run.data.metrics["cited"] == 2
    assert run.data.metrics["unverified_citations"] == 0 and run.data.metrics["latency_s"] > 0
    assert artifact_text(catalog, run, "answer.txt") == f"Two photos show a dog outside: [{first[0]}] and [{third[0]}]."
    client = MlflowClient(tracking_uri=f"sqlite:///{catalog / 'mlflow' / 'mlflow.db'}")
    [trace] = client.search_traces(locations=[run.info.experiment_id],
                                   filter_string=f"metadata.`mlflow.sourceRun` = '{run.info.run_id}'")
    assert {s.name: s.span_type for s in trace.data.spans} == {
        f"rag: {question}": "CHAIN", "retrieve": "RETRIEVER", "llm_answer": "LLM"}
    assert "base64" not in str([s.inputs for s in trace.data.spans]), "the trace keeps no pixels"


def test_a_citation_of_an_image_that_was_not_retrieved_is_flagged(catalog, environ, capsys):
    question = "is there a parrot on a beach?"

    def cite_one_real_one_invented(body):
        real = shown_paths(body)[0][0]
        return text_answer(f"Yes: [{real}] and [parrot/beach-7.jpg]; see also images/dog/sunset.png.")

    with OpenAIStandIn([cite_one_real_one_invented]) as api:
        use_model(environ, api)
        code, out, _ = ask(capsys, catalog, question, "-k", "2")
    assert code == 0
    real = shown_paths(api.bodies()[0])[0][0]
    flagged = out.split("NOT RETRIEVED, do not trust")[1]
    assert "parrot/beach-7.jpg" in flagged and "images/dog/sunset.png" in flagged and real not in flagged
    [run] = runs_for(catalog, question)
    assert run.data.metrics["cited"] == 1 and run.data.metrics["unverified_citations"] == 2
    assert '"parrot/beach-7.jpg"' in artifact_text(catalog, run, "citations.json")


def test_no_rag_asks_the_model_alone_with_no_images(catalog, environ, capsys):
    question = "which photos show a cat indoors?"
    with OpenAIStandIn([text_answer("The sofa photo: [cats/sofa-2.jpg].")]) as api:
        use_model(environ, api)
        code, out, _ = ask(capsys, catalog, question, "--no-rag")
    assert code == 0
    [body] = api.bodies()
    assert image_urls(body) == [] and body["messages"][-1] == {"role": "user", "content": question}
    assert "[no-rag] model alone, no images" in out
    assert "cats/sofa-2.jpg" in out.split("NOT RETRIEVED")[1], "a path the model alone cites is flagged"
    [run] = runs_for(catalog, question)
    assert (run.data.params["mode"], run.data.params["k"], run.data.metrics["images_sent"]) == ("no-rag", "0", 0)


def test_compare_logs_both_answers_side_by_side_and_the_key_reaches_only_the_server(catalog, environ, capsys):
    question = "what animals are in the catalog?"
    script = [lambda body: text_answer(f"A dog: [{shown_paths(body)[0][0]}]."),
              text_answer("Dogs, cats and horses: [horses/field-1.jpg].")]
    with OpenAIStandIn(script) as api:
        use_model(environ, api)
        code, out, err = ask(capsys, catalog, question, "--compare")
    assert code == 0, out + err
    with_images, alone = api.bodies()
    assert len(image_urls(with_images)) == 4 and image_urls(alone) == []  # the default k, then none
    assert [r["headers"]["authorization"] for r in api.requests] == [f"Bearer {SENTINEL_KEY}"] * 2

    runs = runs_for(catalog, question)
    assert [r.data.params["mode"] for r in runs] == ["rag", "no-rag"]
    [comparison] = {r.data.tags["comparison"] for r in runs}
    assert {r.data.params["question"] for r in runs} == {question}
    assert set(runs[0].data.params) == set(runs[1].data.params), "the same columns, side by side"
    assert set(runs[0].data.metrics) - {"retrieval_s"} == set(runs[1].data.metrics)
    assert runs[1].data.metrics["unverified_citations"] == 1 and runs[0].data.metrics["unverified_citations"] == 0
    compare = re.search(r"side by side in MLflow: (\S+)", out)[1]
    assert compare.startswith("http://127.0.0.1:5000/#/compare-runs?runs=")
    assert all(r.info.run_id in compare for r in runs) and f'tags.comparison = "{comparison}"' in out

    for run in runs:
        assert not any(SENTINEL_KEY in v for v in [*run.data.params.values(), *run.data.tags.values()])
        assert run.data.params["server"] == api.base_url
    assert SENTINEL_KEY not in out + err
    leaked = [p for p in catalog.rglob("*") if p.is_file() and SENTINEL_KEY.encode() in p.read_bytes()]
    assert leaked == [], "the key is in no MLflow, Delta or artifact file"


def test_a_server_error_is_one_line_without_the_key_and_a_failed_run(catalog, environ, capsys):
    question = "does any photo show a horse?"
    echo = {"error": {"message": f"Incorrect API key provided: {SENTINEL_KEY}", "code": "invalid_api_key"}}
    with OpenAIStandIn([(401, echo)]) as api:
        use_model(environ, api)
        code, out, err = ask(capsys, catalog, question, "--no-rag")
    assert code == 1
    assert "no answer: AuthenticationError (HTTP 401)" in out and SENTINEL_KEY not in out + err
    [run] = runs_for(catalog, question)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "AuthenticationError (HTTP 401)"


def test_without_a_model_the_command_says_what_to_set_and_exits_non_zero(tmp_path):
    done = subprocess.run([sys.executable, "-m", "orchestration.cli", "--data-dir", str(tmp_path / "data"),
                           "ask", "which photos show a dog outdoors?"], check=False, capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("adrag ask: no vision model configured: set ADRAG_LLM_BASE_URL and ADRAG_VISION_MODEL")
    assert "https://api.openai.com/v1" in line and "localhost:11434/v1" in line and "localhost:8000/v1" in line
    assert not (tmp_path / "data").exists(), "nothing was loaded or written"


@pytest.mark.parametrize("args, message", [
    (["a dog", "-k", "0"], "-k must be from 1 to 8"), (["a dog", "-k", "9"], "-k must be from 1 to 8"),
    (["a dog", "-k", "two"], "-k must be a whole number from 1 to 8, not 'two'"),
    (["   "], "the question is empty"), (["x" * 1001], "at most 1000"),
])
def test_bad_input_is_one_line_and_exit_code_2(environ, capsys, tmp_path, args, message):
    code, out, err = ask(capsys, tmp_path, *args)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err


def test_the_vision_model_setting_falls_back_to_the_review_model_and_urls_lose_their_credentials():
    env = {"ADRAG_LLM_BASE_URL": " http://h:1/v1 ", "ADRAG_LLM_MODEL": "llava", "ADRAG_LLM_API_KEY": "k"}
    assert vision_model_values(env) == {"base_url": "http://h:1/v1", "model": "llava", "api_key": "k"}
    assert vision_model_values({**env, "ADRAG_VISION_MODEL": "qwen2.5vl"})["model"] == "qwen2.5vl"
    assert not VisionSettings(**vision_model_values({})).configured
    assert "sk-secret" not in repr(VisionSettings(base_url="http://h", model="m", api_key="sk-secret"))
    assert safe_server("https://user:sk-secret@api.example.com:8443/v1?key=sk-secret#x") == \
        "https://api.example.com:8443/v1"


def test_images_are_downscaled_and_citations_are_read_in_their_usual_forms(tmp_path):
    big = write_photo(tmp_path / "big.jpg", seed=1, size=(2000, 1000)).read_bytes()
    url, width, height = image_data_url(big)
    assert (width, height) == (IMAGE_MAX_SIDE, IMAGE_MAX_SIDE // 2) and len(url) < len(big) / 3

    shown = [("dog/a.jpg", ["dog/a.jpg", "dog/copy of a.jpg"]), ("cat/b.png", ["cat/b.png"])]
    cited = check_citations("Dogs [dog/a.jpg], [cat/b.png; dog/x.jpg] and [`dog/copy of a.jpg`] (see [1], "
                            "[docs](http://x)); also images/cat/b.png and /tmp/y.webp.", shown)
    assert cited.verified == ("dog/a.jpg", "cat/b.png")
    assert cited.unverified == ("dog/x.jpg", "/tmp/y.webp")
    assert check_citations("No photo shows that.", shown).verified == ()
