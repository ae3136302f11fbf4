"""`adrag`: the demo, a text search over the index, a run over your own folder, and the Dagster UI.

    adrag demo [--offline]            make a demo catalog under data/ and materialize the whole graph
    adrag run --images DIR            the whole graph over your own image folder
    adrag search "a dog on a beach"   top-k paths with scores from the index
    adrag ui                          dagster dev on the same instance the commands above write to
    adrag mlflow                      the MLflow UI on the same store, where Dagster's run links point
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestration.settings import DEFAULTS, OFFLINE, apply_defaults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adrag", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help=f"the data directory (default ${{ADRAG_DATA_DIR}} or {DEFAULTS['ADRAG_DATA_DIR']})")
    parser.add_argument("--offline", action="store_true",
                        help="use the tiny random-weight CLIP model (no download): shows the plumbing, not real retrieval")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="make a demo catalog and run the whole pipeline")
    demo.add_argument("--images-per-subject", type=int, default=12)
    run = commands.add_parser("run", help="run the whole graph over an image folder")
    run.add_argument("--images", help="the source image folder (default <data dir>/images)")
    run.add_argument("--segments", nargs="*", help="segment keys to generate (default: all in the segments file)")
    search = commands.add_parser("search", help="text search over the index")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=5)
    commands.add_parser("ui", help="start dagster dev on this project's Dagster instance")
    commands.add_parser("mlflow", help="start the MLflow UI on this project's MLflow store (ADRAG_MLFLOW_UI_URL)")
    args = parser.parse_args(argv)

    configure_environment(args)
    if args.command == "ui":
        return launch_ui()
    if args.command == "mlflow":
        return launch_mlflow_ui()

    from orchestration import runner  # imports Dagster and the assets: after the environment is set

    if args.command == "demo":
        return runner.run_demo(images_per_subject=args.images_per_subject)
    if args.command == "run":
        return runner.run_everything(segment_keys=args.segments)
    if args.command == "search":
        return runner.print_search(args.query, args.k)
    raise AssertionError(args.command)


def configure_environment(args: argparse.Namespace) -> None:
    if args.data_dir:
        os.environ["ADRAG_DATA_DIR"] = args.data_dir
    if getattr(args, "images", None):
        os.environ["ADRAG_IMAGES_DIR"] = str(Path(args.images).resolve())
    if args.offline:
        os.environ.update(OFFLINE)
    apply_defaults()
    data_dir = Path(os.environ["ADRAG_DATA_DIR"]).resolve()
    os.environ["ADRAG_DATA_DIR"] = str(data_dir)  # absolute, so `dagster dev` and runs agree
    os.environ.setdefault("DAGSTER_HOME", str(data_dir / "dagster_home"))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # A project-local instance: no usage telemetry leaves the machine.
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def launch_ui() -> int:
    import dagster as dg

    from orchestration.pools import apply_pool_limits

    # Runs launched from the UI queue on the `gpu` and `image_api` pools (the UI shows them under
    # Deployment > Concurrency). CLI runs on this instance then claim pool slots too.
    with dg.DagsterInstance.get() as instance:
        apply_pool_limits(instance)
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(root / "workspace.yaml")]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} {' '.join(command)}", flush=True)
    os.chdir(root)
    os.execv(sys.executable, command)


def launch_mlflow_ui() -> int:
    from urllib.parse import urlsplit

    from orchestration.resources import resources_from_environment

    resources = resources_from_environment()
    store = resources["mlflow_tracking"].store(resources["data_store"].layout)  # the store the runs log to
    address = urlsplit(store.ui_url)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.tracking_uri,
               "--host", address.hostname or "127.0.0.1", "--port", str(address.port or 5000)]
    print(" ".join(command), flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    sys.exit(main())
