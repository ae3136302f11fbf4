"""The README's console commands, run as a user runs them: `adrag --offline demo`, then `search`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


# User errors: one line, an exit status, no traceback, nothing run --------------------------------

def clean_environment(monkeypatch, tmp_path: Path) -> None:
    """No adrag or Dagster settings from the caller; named CLIP weights neither cached nor downloadable."""
    for name in [n for n in os.environ if n.startswith(("ADRAG_", "DAGSTER_HOME", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there


def adrag_in_process(capsys, *args: str) -> tuple[int, str, str]:
    from orchestration import cli

    try:
        status = cli.main(list(args))
    except SystemExit as exit_:  # argparse's errors
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_every_argument_of_every_command_has_help():
    import argparse

    from orchestration.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"demo", "run", "search", "ask", "ui", "mlflow", "studio"}
    for name, command in [("adrag", parser), *commands.choices.items()]:
        for action in command._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    for name in ("ui", "mlflow", "studio"):
        assert {"--host", "--port"} <= set(commands.choices[name]._option_string_actions), name


def test_mlflow_listens_where_dagster_links_unless_told_otherwise_and_then_says_which_url_to_set():
    from orchestration.cli import mlflow_address

    assert mlflow_address("http://127.0.0.1:5000", None, None) == ("127.0.0.1", 5000, None)
    assert mlflow_address("http://mlflow.internal:8080/", None, None) == ("mlflow.internal", 8080, None)
    assert mlflow_address("http://127.0.0.1:5000", "127.0.0.1", 5000)[2] is None
    host, port, note = mlflow_address("http://127.0.0.1:5000", "0.0.0.0", 5001)
    assert (host, port) == ("0.0.0.0", 5001)
    assert note == ("Dagster links MLflow runs to http://127.0.0.1:5000, not to this UI: for links here, run every "
                    "adrag command (`adrag ui`, `adrag run`) with ADRAG_MLFLOW_UI_URL=http://localhost:5001")


def test_user_errors_are_one_line_and_an_exit_status_before_anything_runs(data_dir, tmp_path, monkeypatch, capsys):
    """Bad values (exit 2) and inputs that cannot work (exit 1: the folder, the weights, the segments
    file, the brand image): one line on stderr, no run started, the segment partitions as they were.
    --data-dir and --offline work after the command too."""
    import dagster as dg

    clean_environment(monkeypatch, tmp_path)
    d = str(data_dir)
    segments = data_dir / "segments.yaml"
    good_segments = segments.read_text()
    home = cli_home(data_dir)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("segments", ["young-urban-professionals", "outdoor-loving-dog-owners"])

    def check(args, status, message, before=None, after=None):
        if before:
            before()
        try:
            assert adrag_in_process(capsys, *args) == (status, "", message + "\n"), args
        finally:
            if after:
                after()

    known = "young-urban-professionals, outdoor-loving-dog-owners"
    check(["demo", "--offline", "--images-per-subject", "0"], 2,
          "adrag demo: argument --images-per-subject: must be a whole number of at least 1, not '0' "
          "(see `adrag demo --help`)")
    check(["ui", "--port", "0"], 2,
          "adrag ui: argument --port: must be a port number from 1 to 65535, not '0' (see `adrag ui --help`)")
    check(["mlflow", "--port", "http"], 2,
          "adrag mlflow: argument --port: must be a port number from 1 to 65535, not 'http' "
          "(see `adrag mlflow --help`)")
    check(["studio", "--port", "70000"], 2, "adrag studio: argument --port: must be a port number from 1 to "
                                            "65535, not '70000' (see `adrag studio --help`)")
    check(["ask", "which dogs?", "-k", "0"], 2, "adrag ask: -k must be from 1 to 8 (the images shown to the "
                                                "model), not 0")
    check(["run", "--data-dir", d, "--offline", "--segments", "unicorns", "young-urban-professionals", "nope"], 2,
          f"adrag run: unknown segment keys unicorns, nope in --segments; {segments} has: {known}")
    check(["--data-dir", d, "run", "--offline", "--images", str(tmp_path / "nowhere")], 1,
          f"adrag run: image folder {tmp_path / 'nowhere'} does not exist: point at your photos with --images DIR "
          "(or ADRAG_IMAGES_DIR), or make a demo catalog with `adrag --offline demo`")
    check(["--data-dir", d, "run", "--offline", "--images", str(segments)], 1,
          f"adrag run: image folder {segments} is not a folder: point at your photos with --images DIR "
          "(or ADRAG_IMAGES_DIR), or make a demo catalog with `adrag --offline demo`")
    check(["--data-dir", d, "run"], 1,
          "adrag run: cannot load open_clip weights ViT-B-32/laion2b_s34b_b79k: the weights are not cached and "
          "127.0.0.1 cannot be reached. Download the open_clip checkpoint where there is network and point at the "
          "file with ADRAG_CLIP_WEIGHTS=/path/to/open_clip_model.safetensors (ADRAG_CLIP_MODEL names its "
          "architecture), or run the plumbing offline on random weights: ADRAG_CLIP_MODEL=adrag-tiny-clip "
          "ADRAG_CLIP_WEIGHTS=random (or `adrag --offline demo`).")
    def restore():
        segments.write_text(good_segments)

    check(["--data-dir", d, "run", "--offline"], 1,
          f"adrag run: segments file {segments} is not valid YAML: line 4, column 4: expected <block end>, but found "
          "'<block mapping start>' (while parsing a block collection that starts on line 2); nothing was run, the "
          "segment partitions are as they were",
          before=lambda: segments.write_text("segments:\n  - name: A\n    description: a\n   x: 1\n"),
          after=restore)
    check(["--data-dir", d, "--offline", "run"], 1,
          f"adrag run: segments file {segments}: segment #1 'Dog owners' (line 2) and segment #2 'Dog Owners!' "
          "(line 3) both have the key 'dog-owners': give each segment its own name or an explicit `key:` (a key "
          "carries its segment's ads and review history); nothing was run, the segment partitions are as they were",
          before=lambda: segments.write_text("segments:\n  - {name: Dog owners, description: a}\n"
                                             "  - {name: Dog Owners!, description: b}\n"),
          after=restore)
    brand = data_dir / "brand" / "brand.png"
    brand_bytes = brand.read_bytes()
    check(["--data-dir", d, "--offline", "run", "--segments", "young-urban-professionals"], 1,
          f"adrag run: no brand image at {brand}: put the brand's image there (a PNG or JPEG, e.g. its logo); every "
          "ad carries it", before=brand.unlink, after=lambda: brand.write_bytes(brand_bytes))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == [], "nothing ran"
        assert instance.get_dynamic_partitions("segments") == ["young-urban-professionals",
                                                               "outdoor-loving-dog-owners"]


def cli_home(data_dir: Path) -> Path:
    from orchestration.cli import dagster_home

    return dagster_home(data_dir)


def test_run_summary_lists_failed_checks_and_a_missing_brand_fails_at_once_without_showing_an_older_ad(
        data_dir, tmp_path, monkeypatch, capsys):
    """`adrag run` ends with the checks that did not pass (the quarantine rate over its limit). A
    campaign run started without the CLI's check (from the UI, a sensor) fails at once when the brand
    image is gone: no retries, and the summary says why instead of listing the segment's older ad."""
    import dagster as dg

    from orchestration import cli, runner

    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("ADRAG_MAX_QUARANTINE_RATE", "0.05")
    for n in (1, 2):
        (data_dir / "images" / f"notes-{n}.jpg").write_text(f"not a photo {n}\n")
    key = "young-urban-professionals"
    status, out, _ = adrag_in_process(capsys, "run", "--data-dir", str(data_dir), "--offline", "--segments", key)
    assert status == 0, out[-3000:]
    assert "ads (1 of 1 segments" in out
    assert re.search(r"\n  WARN  image_manifest manifest_quarantine_rate_within_limit: 2 of 14 files \(14.3%\) are "
                     r"quarantined at the catalog stage, above the limit of 5.0%; e.g. 'notes-1.jpg': not a "
                     r"recognised image file: unknown format, not one of GIF, JPEG, PNG, WEBP \(the bytes start "
                     r"with 'not a photo '\)", out), out[-3000:]
    [older_ad] = re.findall(r"(\S+/campaigns/\S+/ad-\w+\.png)", out)

    brand = data_dir / "brand" / "brand.png"
    brand.unlink()
    args = cli.build_parser().parse_args(["--data-dir", str(data_dir), "--offline", "run"])
    project = runner.Project(cli.settings_from_flags(args), cli_home(data_dir))
    report = runner.RunReport()
    keys = [key]
    with project.instance() as instance:
        assert runner.generate_segments(project, keys, instance, report) == keys
        [run] = instance.get_runs(limit=1)
        assert not instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY), "not retried"
    runner.print_outputs(project, keys, keys, 1.0, report)
    out = capsys.readouterr().out
    why = f"FAILED: segment_campaign: no brand image at {brand}: put the brand's image there (a PNG or JPEG, e.g. its " \
          "logo); every ad carries it"
    assert f"\n  young-urban-professionals        {why}\n" in out, out
    assert older_ad not in out


def test_run_without_reachable_weights_fails_at_once_in_one_line_without_a_traceback(tmp_path):
    """As a user meets it: a fresh data directory, `adrag run` without --offline, nothing to download from."""
    data_dir = tmp_path / "data"
    (data_dir / "images").mkdir(parents=True)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "orchestration.cli", "--data-dir", str(data_dir), "run"],
                         check=False, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
                              "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert run.returncode == 1 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("adrag run: cannot load open_clip weights ViT-B-32/laion2b_s34b_b79k: the weights "
                                 "are not cached and 127.0.0.1 cannot be reached."), run.stderr
    assert time.perf_counter() - started < 120  # no hub retries: the import of the project is most of it


def test_ui_and_mlflow_pass_host_and_port_to_their_servers(tmp_path, monkeypatch, capsys):
    """What `adrag ui` starts (run_supervised stopped just before) and `adrag mlflow` execs (os.execv stopped):
    --host/--port reach `dagster dev -h/-p` and `mlflow ui`; MLflow moved away from ADRAG_MLFLOW_UI_URL says
    what to set."""
    from orchestration import cli, supervise

    class Exec(Exception):
        pass

    def stop(path, argv, env=None):
        raise Exec(argv, env)

    clean_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(REPO)  # the launchers chdir to the project
    monkeypatch.setattr(supervise, "run_supervised", lambda command, env, cwd: stop(None, list(command), env))
    monkeypatch.setattr(os, "execv", stop)
    monkeypatch.setattr(os, "execve", stop)
    data = str(tmp_path / "data")

    with pytest.raises(Exec) as ui:
        cli.main(["ui", "--data-dir", data, "--offline", "--host", "0.0.0.0", "--port", "3001"])
    argv, env = ui.value.args
    assert argv[2:5] == ["dagster", "dev", "-w"] and argv[-4:] == ["-h", "0.0.0.0", "-p", "3001"]
    assert env["ADRAG_CLIP_MODEL"] == "adrag-tiny-clip" and env["DAGSTER_HOME"] == f"{data}/dagster_home"
    with pytest.raises(Exec) as ui:
        cli.main(["--data-dir", data, "ui"])
    assert "-p" not in ui.value.args[0], "unset: dagster dev's own default (or $DAGSTER_CLI_DEV_PORT)"

    monkeypatch.setenv("ADRAG_MLFLOW_UI_URL", "http://127.0.0.1:5002")
    with pytest.raises(Exec) as mlflow:
        cli.main(["mlflow", "--data-dir", data])
    assert mlflow.value.args[0][-4:] == ["--host", "127.0.0.1", "--port", "5002"]
    assert capsys.readouterr().err == ""
    with pytest.raises(Exec) as mlflow:
        cli.main(["mlflow", "--data-dir", data, "--port", "5003"])
    assert mlflow.value.args[0][-4:] == ["--host", "127.0.0.1", "--port", "5003"]
    assert capsys.readouterr().err == (
        "adrag mlflow: note: Dagster links MLflow runs to http://127.0.0.1:5002, not to this UI: for links here, run "
        "every adrag command (`adrag ui`, `adrag run`) with ADRAG_MLFLOW_UI_URL=http://127.0.0.1:5003\n")
