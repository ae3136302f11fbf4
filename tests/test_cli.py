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
