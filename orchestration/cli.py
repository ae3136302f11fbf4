"""`adrag`: the demo, a search over the index, a run over your own folder, and the Dagster UI.

    adrag demo [--offline]            make a demo catalog under data/ and materialize the whole graph
    adrag run --images DIR            the whole graph over your own image folder
    adrag search "a dog on a beach"   top-k paths with scores from the index; also --image PATH
                                      [--image-weight W], negative terms ("dog -leash"), --label L
    adrag ask "which photos show a dog outdoors?" [-k 4] [--no-rag | --compare]
                                      a vision chat model answers from the top-k images, citing their paths
    adrag ui [--host H --port P]      dagster dev on the same instance the commands above write to
    adrag mlflow [--host H --port P]  the MLflow UI on the same store, where Dagster's run links point
                                      (ADRAG_MLFLOW_UI_URL: set it once and both agree)
    adrag studio [--host H --port P]  the review studio (Streamlit): review a segment, approve, make its ad

--data-dir and --offline go before or after the command (`adrag demo --offline`). A bad value or a
missing input is one line on stderr and a non-zero exit status: 2 for a bad argument, 1 for a file,
folder or model that cannot be used.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from assets_pkg.answers import questions
from orchestration.preflight import CannotRun, check_clip_weights
from orchestration.settings import DAGSTER_PG_URL, RESOURCE_SETTINGS, is_set, missing_vision_model, vision_model_values

DATA_DIR = RESOURCE_SETTINGS["data_store"]["data_dir"]
MLFLOW_UI_URL = RESOURCE_SETTINGS["mlflow_tracking"]["ui_url"]
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # MlflowTracking.ui_url's default
IMAGES_DIR = RESOURCE_SETTINGS["data_store"]["images_dir"]
STUDIO_TOKEN = "ADRAG_STUDIO_TOKEN"  # when set, the studio page asks for it first
NO_QUALITY_BAR = "-1"  # the lowest cosine: every ad passes
NEAR_DUPLICATE_COSINE = RESOURCE_SETTINGS["candidate_diversity"]["near_duplicate_cosine"]
TRACKING_URI = RESOURCE_SETTINGS["mlflow_tracking"]["tracking_uri"]
# The commands that open Dagster's instance, and those that write to (or serve) the MLflow store.
USES_INSTANCE = {"demo", "run", "ui", "studio"}
USES_MLFLOW = {"demo", "run", "ask", "ui", "mlflow", "studio"}


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block) with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return port


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def common_options(after_command: bool) -> argparse.ArgumentParser:
    """--data-dir and --offline, for the top level and (`after_command`) every command: there the
    defaults are suppressed, so an option given only before the command keeps its value."""
    options = Parser(add_help=False)
    unset = {"default": argparse.SUPPRESS} if after_command else {}
    options.add_argument("--data-dir", metavar="DIR", **unset,
                         help=f"the data directory: images/, brand/brand.png, segments.yaml and what the runs write "
                              f"(default ${DATA_DIR}, else ./data)")
    options.add_argument("--offline", action="store_true", **unset,
                         help="use the tiny random-weight CLIP model (no download): shows the plumbing, not real "
                              "retrieval")
    return options


def build_parser() -> Parser:
    parser = Parser(prog="adrag", description=__doc__.splitlines()[0], parents=[common_options(False)],
                    epilog="Each command has its own --help.")
    options = [common_options(True)]
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", parents=options, help="make a demo catalog and run the whole pipeline",
                               description="Draw a demo photo catalog (and brand image, segments file) under the "
                                           "data directory, then run the whole graph on it, as `adrag run` does.")
    demo.add_argument("--images-per-subject", type=at_least_one, default=12, metavar="N",
                      help="demo photos drawn per subject (dog, cat, ...), at least 1 (default 12)")
    run = commands.add_parser("run", parents=options, help="run the whole graph over an image folder",
                              description="Refresh the catalog (scan, mirror, embed, index) from the image folder, "
                                          "then make an ad for each segment of the segments file.")
    run.add_argument("--images", metavar="DIR", help="the source image folder (default <data dir>/images)")
    run.add_argument("--segments", nargs="*", metavar="KEY",
                     help="segment keys to make ads for (default: every segment in <data dir>/segments.yaml)")
    search = commands.add_parser(
        "search", parents=options, help="search the index by text, image or both",
        description="Top-k images by cosine to one query vector (assets_pkg/index/queries.py): text, an image, "
                    "both fused, minus negative terms, within labels.")
    search.add_argument("query", nargs="?", default="",
                        help='text; -word or -"a phrase" in it is a negative term: "dog -leash"')
    search.add_argument("-k", type=int, default=5, help="how many images (default 5)")
    search.add_argument("--image", help="an image file as the query, alone or fused with the text")
    search.add_argument("--image-weight", type=float,
                        help="the image's share when text and image are both given, 0..1 (default 0.5)")
    search.add_argument("--negative-weight", type=float,
                        help="how far the negative terms push the query away, 0..1 (default 0.5)")
    search.add_argument("--label", action="append", default=[], dest="labels", metavar="LABEL",
                        help="only images carrying this label (repeat for any of several)")
    ask = commands.add_parser("ask", parents=options,
                              help="answer a question from the top-k images with a vision chat model "
                                   "(ADRAG_LLM_BASE_URL, ADRAG_VISION_MODEL), citing their paths; logged to MLflow")
    ask.add_argument("question", help='what to ask about the photos, e.g. "which photos show a dog outdoors?"')
    ask.add_argument("-k", default=str(questions.DEFAULT_K),
                     help=f"images retrieved and shown to the model, 1-{questions.MAX_K} "
                          f"(default {questions.DEFAULT_K})")
    mode = ask.add_mutually_exclusive_group()
    mode.add_argument("--no-rag", action="store_true", help="the model alone, no images (the baseline)")
    mode.add_argument("--compare", action="store_true",
                      help="both, with images and without: two MLflow runs with a shared `comparison` tag")
    ui = commands.add_parser("ui", parents=options, help="start dagster dev on this project's Dagster instance",
                             description="`dagster dev` on the instance the other commands write to. Its links "
                                         f"to MLflow runs point at ${MLFLOW_UI_URL} (default {DEFAULT_MLFLOW_UI}), "
                                         "where `adrag mlflow` listens unless given another --host/--port.")
    ui.add_argument("--host", help="address the Dagster UI listens on (dagster dev -h; default 127.0.0.1, "
                                   "or $DAGSTER_CLI_DEV_HOST)")
    ui.add_argument("--port", type=port_number,
                    help="port the Dagster UI listens on (dagster dev -p; default 3000, or $DAGSTER_CLI_DEV_PORT)")
    mlflow = commands.add_parser(
        "mlflow", parents=options, help=f"start the MLflow UI on this project's MLflow store (${MLFLOW_UI_URL})",
        description=f"`mlflow ui` on the store the runs log to, listening where ${MLFLOW_UI_URL} (default "
                    f"{DEFAULT_MLFLOW_UI}) says: Dagster's links to MLflow runs use that URL. To listen elsewhere, "
                    f"set ${MLFLOW_UI_URL} for every adrag command (`export {MLFLOW_UI_URL}=http://HOST:PORT`); "
                    "--host/--port alone move only this UI, and it says which URL the links then need.")
    mlflow.add_argument("--host", help=f"address to listen on (default: the host of ${MLFLOW_UI_URL})")
    mlflow.add_argument("--port", type=port_number, help=f"port to listen on (default: the port of ${MLFLOW_UI_URL})")
    studio = commands.add_parser("studio", parents=options, help="start the review studio (a Streamlit page)")
    studio.add_argument("--host", default="127.0.0.1",
                        help=f"address to listen on (default 127.0.0.1); other than loopback only with "
                             f"${STUDIO_TOKEN} set")
    studio.add_argument("--port", type=port_number, default=8501, help="port to listen on (default 8501)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except CannotRun as err:
        print(f"adrag {args.command}: {err}", file=sys.stderr)
        return err.exit_code


def run_command(args: argparse.Namespace) -> int:
    if args.command == "studio" and not is_loopback(args.host) and not os.environ.get(STUDIO_TOKEN):
        print(f"adrag studio: refusing to listen on {args.host} without ${STUDIO_TOKEN} set "
              "(anyone who can reach it could approve ads)", file=sys.stderr)
        return 2

    if args.command == "ask":
        try:
            question, k = questions.check_question(args.question), questions.check_k(args.k)
        except questions.InvalidRequest as err:
            print(f"adrag ask: {err}", file=sys.stderr)
            return 2
        from assets_pkg.answers.vision_model import VisionSettings

        vision = VisionSettings(**vision_model_values())
        if not vision.configured:
            print(f"adrag ask: {missing_vision_model(vision_model_values())}", file=sys.stderr)
            return 2

    overrides = settings_from_flags(args)
    home = dagster_home(Path(overrides[DATA_DIR]))
    if problem := unreachable_database(args.command, overrides):
        print(f"adrag {args.command}: {problem}", file=sys.stderr)
        return 2
    if args.command == "ui":
        return launch_ui(overrides, home, args.host, args.port)
    if args.command == "mlflow":
        return launch_mlflow_ui(overrides, args.host, args.port)
    if args.command == "studio":
        return launch_studio(overrides, home, args.host, args.port)

    from orchestration import runner  # imports Dagster and the assets: only for the commands that run them

    project = runner.Project(overrides, home)
    if args.command == "demo":
        return runner.run_demo(project, images_per_subject=args.images_per_subject)
    if args.command == "run":
        return runner.run_everything(project, segment_keys=args.segments)
    if args.command == "search":
        return run_search(project, args)
    if args.command == "ask":
        from orchestration.ask import run_ask

        if not args.no_rag:  # the images come from the index, through CLIP
            check_clip_weights(project.current["clip"].spec)

        with_images, alone = questions.WITH_IMAGES, questions.MODEL_ALONE
        modes = [alone] if args.no_rag else [with_images, alone] if args.compare else [with_images]
        return run_ask(project, vision, question, k, modes)
    raise AssertionError(args.command)


def run_search(project, args: argparse.Namespace) -> int:
    """`adrag search`: a bad query is one line on stderr and exit status 2, no traceback."""
    from assets_pkg.index.queries import BadQuery, Query, QueryImage
    from orchestration import runner

    try:
        if args.k < 1:
            raise BadQuery(f"-k must be at least 1, not {args.k}")
        image = QueryImage.read(args.image) if args.image else None
        weights = {name: value for name, value in (("image_weight", args.image_weight),
                                                   ("negative_weight", args.negative_weight)) if value is not None}
        query = Query.parse(args.query, image, args.labels, **weights)
        query.check()  # before the model loads
        check_clip_weights(project.current["clip"].spec)
        return runner.print_search(project, query, args.k)
    except BadQuery as err:
        print(f"adrag search: {err}", file=sys.stderr)
        return 2


def settings_from_flags(args: argparse.Namespace) -> dict[str, str]:
    """The settings the flags change, over the environment (which is left as it is)."""
    from orchestration.resources import build_resources

    overrides = {}
    if args.data_dir:
        overrides[DATA_DIR] = args.data_dir
    if getattr(args, "images", None):
        overrides[IMAGES_DIR] = str(Path(args.images).resolve())
    if args.offline:
        from assets_pkg.embeddings.model import RANDOM, TINY_MODEL
        from assets_pkg.index.diversity import TINY_MODEL_NEAR_DUPLICATE_COSINE

        clip, ads = RESOURCE_SETTINGS["clip"], RESOURCE_SETTINGS["image_generator"]
        overrides.update({clip["model_name"]: TINY_MODEL, clip["weights"]: RANDOM})
        # Random weights: ad quality scores mean nothing, so they are recorded but bar nothing (no fallbacks).
        overrides.update({ads[name]: NO_QUALITY_BAR for name in ("min_subject_score", "min_seed_score",
                                                                  "min_brand_score")})
        if not is_set(NEAR_DUPLICATE_COSINE):  # the tiny model's cosines crowd near 1 (assets_pkg.index.diversity)
            overrides[NEAR_DUPLICATE_COSINE] = str(TINY_MODEL_NEAR_DUPLICATE_COSINE)
    # Absolute, so `dagster dev`, its runs and this process agree whatever their working directory.
    overrides[DATA_DIR] = str(build_resources(overrides, read_now=True)["data_store"].layout.data_dir)
    return overrides


def dagster_home(data_dir: Path) -> Path:
    """$DAGSTER_HOME, else a project-local instance under the data directory (no telemetry leaves it);
    its dagster.yaml written from the settings (on PostgreSQL with $ADRAG_DAGSTER_PG_URL) unless it is the user's."""
    from orchestration.instance_config import write_instance_yaml

    home = Path(os.environ.get("DAGSTER_HOME") or data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if warning := write_instance_yaml(home):
        print(f"adrag: {warning}", file=sys.stderr)
    return home


def unreachable_database(command: str, overrides: dict[str, str]) -> str | None:
    """One line when a PostgreSQL database the command needs cannot be reached (host and reason, no
    password), else None. Checked before anything starts: Dagster and MLflow would retry, then raise a traceback."""
    from assets_pkg.database_urls import DatabaseUnavailable, check_reachable, is_postgres

    environ = {**os.environ, **overrides}
    wanted = []
    if command in USES_INSTANCE and is_set(DAGSTER_PG_URL, environ):
        wanted.append((environ[DAGSTER_PG_URL].strip(), f"Dagster's PostgreSQL database (${DAGSTER_PG_URL})"))
    tracking = environ.get(TRACKING_URI, "").strip()
    if command in USES_MLFLOW and is_postgres(tracking):
        wanted.append((tracking, f"MLflow's PostgreSQL store (${TRACKING_URI})"))
    for url, what in wanted:
        try:
            check_reachable(url, what)
        except DatabaseUnavailable as err:
            return str(err)
    return None


def launch_ui(overrides: dict[str, str], home: Path, host: str | None, port: int | None) -> int:
    import dagster as dg

    from orchestration.instance_config import uses_postgres
    from orchestration.pools import apply_pool_limits, ensure_pool_limits

    # `dagster dev`, its code server and its runs inherit the flags' settings through their environment.
    environ = {**os.environ, **overrides, "DAGSTER_HOME": str(home)}
    # Runs launched from the UI queue on the `gpu` and `image_api` pools (the UI shows them under
    # Deployment > Concurrency). CLI runs on this instance then claim pool slots too. A PostgreSQL
    # instance is shared: a limit set there (by hand, for all machines) is kept.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (ensure_pool_limits if uses_postgres(environ) else apply_pool_limits)(instance, environ)
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(root / "workspace.yaml"),
               *(["-h", host] if host else []), *(["-p", str(port)] if port else [])]  # unset: dagster dev's own
    print(f"DAGSTER_HOME={home} {' '.join(command)}", flush=True)
    from orchestration.supervise import run_supervised

    # Not exec: dagster dev alone ignores a SIGTERM and leaves its webserver and daemon running.
    return run_supervised(command, environ, cwd=root)


def mlflow_address(ui_url: str, host: str | None, port: int | None) -> tuple[str, int, str | None]:
    """Where `adrag mlflow` listens: the flags, else ADRAG_MLFLOW_UI_URL's host and port. The third item
    is a note when that is not where Dagster's links point (the URL to set instead), else None."""
    from urllib.parse import urlsplit

    address = urlsplit(ui_url or DEFAULT_MLFLOW_UI)
    listen_host, listen_port = host or address.hostname or "127.0.0.1", port or address.port or 5000
    if (listen_host, listen_port) == (address.hostname, address.port):
        return listen_host, listen_port, None
    shown = "localhost" if listen_host in ("0.0.0.0", "::") else listen_host
    shown = f"[{shown}]" if ":" in shown else shown
    return listen_host, listen_port, (
        f"Dagster links MLflow runs to {ui_url or '(nowhere: no URL set)'}, not to this UI: for links here, run "
        f"every adrag command (`adrag ui`, `adrag run`) with {MLFLOW_UI_URL}=http://{shown}:{listen_port}")


def launch_mlflow_ui(overrides: dict[str, str], host: str | None, port: int | None) -> int:
    from assets_pkg.database_urls import masked
    from orchestration.resources import build_resources

    resources = build_resources(overrides, read_now=True)
    store = resources["mlflow_tracking"].store(resources["data_store"].layout)  # the store the runs log to
    listen_host, listen_port, note = mlflow_address(store.ui_url, host, port)
    if note:
        print(f"adrag mlflow: note: {note}", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.tracking_uri,
               "--host", listen_host, "--port", str(listen_port)]
    environ, shown = dict(os.environ), " ".join(command)
    if masked(store.tracking_uri) != store.tracking_uri:  # a password: through the environment, not argv (ps)
        environ["MLFLOW_BACKEND_STORE_URI"] = store.tracking_uri
        at = command.index("--backend-store-uri")
        del command[at:at + 2]
        shown = f"MLFLOW_BACKEND_STORE_URI={masked(store.tracking_uri)} {' '.join(command)}"
    print(shown, flush=True)
    os.execve(sys.executable, command, environ)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch_studio(overrides: dict[str, str], home: Path, host: str, port: int) -> int:
    root = Path(__file__).resolve().parent.parent
    # The page reads the flags' settings from its environment, like `dagster dev` under `adrag ui`.
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    environ = {**os.environ, **overrides, "DAGSTER_HOME": str(home), "PYTHONPATH": path}
    command = [sys.executable, "-m", "streamlit", "run", str(root / "studio" / "app.py"),
               "--server.address", host, "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
               "--client.toolbarMode", "viewer"]
    print(f"DAGSTER_HOME={home} {' '.join(command)}", flush=True)
    os.chdir(root)
    os.execve(sys.executable, command, environ)


if __name__ == "__main__":
    sys.exit(main())
