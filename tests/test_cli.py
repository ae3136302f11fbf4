"""The README's console commands, run as a user runs them: `adrag --offline demo`, then `search`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def adrag(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestration.cli", "--data-dir", str(data_dir), "--offline", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(data_dir.parent)})


def test_offline_demo_then_search(tmp_path):
    data_dir = tmp_path / "data"
    demo = adrag("demo", "--images-per-subject", "2", data_dir=data_dir)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "ads (6 of 6 segments" in demo.stdout
    ads = re.findall(r"(\S+/campaigns/\S+/ad-\w+\.png)", demo.stdout)
    assert len(ads) == 6
    for ad in ads:
        assert Image.open(ad).size == (1024, 1024)
    assert f"sqlite:///{data_dir}/mlflow/mlflow.db" in demo.stdout
    assert (data_dir / "dagster_home" / "dagster.yaml").is_file()
    import dagster as dg  # the runs say why they ran, and a campaign run which segments

    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        runs = instance.get_runs()
    assert {run.tags.get("adrag/trigger") for run in runs} == {"cli"}
    segments = {key for run in runs if run.job_name == "generate_campaigns"
                for key in run.tags["adrag/segments"].split(",")}
    assert len(segments) == 6

    search = adrag("search", "a photo of a horse", "-k", "4", data_dir=data_dir)
    assert search.returncode == 0, search.stderr[-3000:]
    lines = [line for line in search.stdout.splitlines() if re.match(r"\s*\d+\. ", line)]
    assert len(lines) == 4
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert all((data_dir / "images" / line.split()[2]).is_file() for line in lines)


def test_the_cli_leaves_its_environment_alone_and_its_flags_reach_the_resources(tmp_path, monkeypatch, capsys):
    """Flags become the resources' settings, not writes to os.environ (which `dagster dev` and runs inherit
    only through the environment `adrag ui` passes them)."""
    from orchestration import cli

    for name in [n for n in os.environ if n.startswith(("ADRAG_", "DAGSTER_HOME"))]:
        monkeypatch.delenv(name)
    before = dict(os.environ)
    data_dir = tmp_path / "elsewhere"
    assert cli.main(["--data-dir", str(data_dir), "--offline", "search", "a dog"]) == 1  # no index yet
    assert "no index for model adrag-tiny-clip/" in capsys.readouterr().out
    changed = {k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
    assert changed <= {"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"}, changed
    assert (data_dir / "dagster_home" / "dagster.yaml").is_file()


def test_search_by_image_text_and_image_negatives_and_labels_and_bad_queries_in_one_line(
        resources, instance, data_dir, monkeypatch, capsys):
    """`adrag search`'s query forms over an index the pipeline built; scores are cosines (the photo
    searched for itself scores 1) and a bad query is one line on stderr, exit status 2."""
    from test_pipeline import refresh

    from orchestration import cli

    for name in [n for n in os.environ if n.startswith(("ADRAG_", "DAGSTER_HOME"))]:
        monkeypatch.delenv(name)
    refresh(resources, instance)

    def search(*args: str) -> tuple[int, list[str], str]:
        status = cli.main(["--data-dir", str(data_dir), "--offline", "search", *args])
        out, err = capsys.readouterr()
        return status, out.splitlines(), err

    photo = data_dir / "images" / "dog" / "dog-1.png"
    status, lines, _ = search("--image", str(photo), "-k", "3")
    assert status == 0 and lines[0] == f"query: image {photo}"
    assert re.fullmatch(r" 1\. 1\.0000  dog/dog-1\.png  \[dog\]", lines[1]), lines

    status, lines, _ = search("a photo of a dog -leash", "--image", str(photo), "--image-weight", "0.3",
                              "--label", "dog", "--label", "Cat", "-k", "8")
    assert status == 0
    assert lines[0] == f'query: "a photo of a dog" 0.7 + image {photo} 0.3 - "leash" x0.5 | labels: dog, cat'
    hits = [line.split() for line in lines[1:]]
    assert len(hits) == 8 and {h[3] for h in hits} == {"[dog]", "[cat]"}
    assert [float(h[1]) for h in hits] == sorted((float(h[1]) for h in hits), reverse=True)

    status, lines, _ = search("a photo of a horse", "--label", "horse")
    assert status == 1 and lines[-1] == "no image in the index carries label horse (labels: cat, dog, parrot)"

    not_an_image = data_dir / "notes.jpg"
    not_an_image.write_text("not a photo")
    for args, message in [
        (("dog", "--image", str(data_dir / "missing.jpg")), f"query image {data_dir / 'missing.jpg'} does not exist"),
        (("dog", "--image", str(not_an_image)),
         f"cannot decode query image {not_an_image}: cannot identify image file"),
        (("--", "-leash -collar"), ("nothing to search for: the query has only negative terms (-leash -collar); "
                                    "add words or an image")),
        (("dog", "-k", "0"), "-k must be at least 1, not 0"),
        (("dog", "--image", str(photo), "--image-weight", "2"), "image weight 2 is outside 0..1"),
    ]:
        status, lines, err = search(*args)
        assert (status, lines, err) == (2, [], f"adrag search: {message}\n"), args
