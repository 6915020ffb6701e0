"""Command line: parse arguments, load settings, set up logging, call one function.

Results for people go to stdout, logs to stderr. Every error of the product's
family becomes one line on stderr and its documented exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlalchemy.exc import OperationalError, ProgrammingError

from db import migrate
from db.engine import InvalidDatabaseURL, make_engine, mask_url, sqlite_file
from jobs import __version__
from jobs.config import Settings, load_settings
from jobs.errors import ConfigError, DatabaseError, MovieRecsError, UsageError
from jobs.logs import configure_logging

# Each command imports the modules it needs when it runs: implicit, pandas
# and APScheduler would otherwise add about half a second to every command.

log = logging.getLogger("jobs")

EXIT_STATUSES = """exit statuses:
  0  success
  1  unexpected failure (a bug; rerun with --verbose for the traceback)
  2  invalid usage or configuration
  3  invalid input data (file, line and value are named)
  4  nothing to do: the database has no ratings or favorites to train on,
     or (refresh) no run with a stored model is published yet
  5  another run holds the run lock
  6  database unreachable, failing, or its schema not up to date
  7  training failed (for example diverged); the previous lists stay published
"""

Command = Callable[[argparse.Namespace, Settings, TextIO], None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    url = "the database"
    try:
        settings = load_settings(args.config, args.database_url)
        url = mask_url(settings.database.url)
        args.handler(args, settings, sys.stdout)
    except MovieRecsError as exc:
        return _report(exc, exc.exit_status, args.verbose)
    except migrate.SchemaNotCurrent as exc:
        return _report(exc, DatabaseError.exit_status, args.verbose)
    except migrate.UnknownRevision as exc:
        return _report(exc, ConfigError.exit_status, args.verbose)
    except BrokenPipeError:
        # The reader of stdout went away (as in `... | head`), so stop quietly.
        sys.stderr.close()
        return 0
    except (OperationalError, ProgrammingError, SQLAlchemyDatabaseError) as exc:
        message = _database_message(exc, url)
        return _report(exc, DatabaseError.exit_status, args.verbose, message)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the top-level handler of the program
        log.debug("unexpected failure", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _report(
    error: BaseException, status: int, verbose: bool, message: str | None = None
) -> int:
    if verbose:
        log.debug("error details", exc_info=error)
    print(f"error: {message or error}", file=sys.stderr)
    return status


def _database_message(exc: SQLAlchemyDatabaseError, url: str) -> str:
    # The driver's first line names what failed. The statement and parameters
    # that SQLAlchemy appends can be long, so they are left for --verbose.
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return f"database error on {url}: {detail}"


def _engine(settings: Settings, create: bool = False) -> Engine:
    """Make the engine; a missing SQLite file is an error unless ``create``.

    SQLite creates a missing file on first connect, so a command run from the
    wrong folder (a crontab line without ``cd``) would otherwise make an empty
    database there and report that its schema is behind.
    """
    try:
        engine = make_engine(settings.database.url)
    except InvalidDatabaseURL as exc:
        raise ConfigError(str(exc)) from exc
    path = sqlite_file(engine)
    if not create and path is not None and not path.exists():
        raise DatabaseError(
            f"database file {path.resolve()} does not exist; run from the folder "
            "that holds it, point DATABASE_URL or --database-url at it, or create "
            "it with: python -m jobs db upgrade"
        )
    return engine


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Apply migrations up to the requested revision."""
    engine = _engine(settings, create=True)
    migrate.upgrade(engine, args.revision)
    print(
        f"database {mask_url(engine.url)} is at revision "
        f"{migrate.current_revision(engine)}",
        file=out,
    )


def cmd_db_downgrade(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Revert migrations down to the requested revision."""
    engine = _engine(settings)
    migrate.downgrade(engine, args.revision)
    current = migrate.current_revision(engine) or "base (no tables)"
    print(f"database {mask_url(engine.url)} is at revision {current}", file=out)


def cmd_db_current(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Print the database's revision and the release's head revision."""
    engine = _engine(settings)
    current = (
        migrate.current_revision(engine) or "none (run: python -m jobs db upgrade)"
    )
    print(f"current: {current}\nhead:    {migrate.head_revision()}", file=out)


def cmd_ingest(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Load a MovieLens folder or zip."""
    from jobs.ingest import ingest

    engine = _engine(settings)
    migrate.require_current(engine)
    result = ingest(engine, Path(args.source))
    print(
        f"ingested {result.layout} from {args.source}: {result.movies_read} movies "
        f"({result.movies_new} new), {result.ratings_read} ratings "
        f"({result.ratings_new} new), {result.users_new} new users "
        f"in {result.seconds:.1f} s",
        file=out,
    )


def cmd_favorites_add(
    args: argparse.Namespace, settings: Settings, out: TextIO
) -> None:
    """Add favorites by title for a new or existing user."""
    from jobs import favorites

    if not args.titles and not args.movie_id:
        raise UsageError("favorites add needs at least one TITLE or --movie-id")
    engine = _engine(settings)
    migrate.require_current(engine)
    result = favorites.add_favorites(engine, args.user, args.titles, args.movie_id)
    created = " (new user)" if result.user_created else ""
    print(f"user_id {result.user_id}{created}", file=out)
    for movie in result.added:
        print(f"  added    {movie.title} (movie_id {movie.movie_id})", file=out)
    for movie in result.already_favorites:
        print(f"  present  {movie.title} (movie_id {movie.movie_id})", file=out)


def cmd_run_once(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Retrain and publish."""
    from jobs.run import run_once

    engine = _engine(settings)
    summary = run_once(engine, settings)
    counts = summary.counts
    print(
        f"run {summary.run_id} succeeded: {counts['n_users']} users, "
        f"{counts['n_movies']} movies, {counts['n_interactions']} positives, "
        f"{counts['n_recommendations']} recommendations, "
        f"{counts['n_similar']} similar-movie rows in {summary.timings['total']:.1f} s",
        file=out,
    )
    if summary.evaluation is not None:
        evaluation = summary.evaluation
        print(
            f"holdout nDCG@{evaluation.k} {evaluation.model.ndcg:.4f} "
            f"(popularity {evaluation.popular.ndcg:.4f}), "
            f"precision@{evaluation.k} {evaluation.model.precision:.4f}, "
            f"recall@{evaluation.k} {evaluation.model.recall:.4f}",
            file=out,
        )


def cmd_evaluate(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Measure the configured model and popularity on a holdout; write nothing."""
    from jobs import quality

    engine = _engine(settings)
    evaluation = quality.evaluate_current(engine, settings)
    if args.json:
        quality.print_json(evaluation.summary(), out)
    else:
        quality.print_evaluation(evaluation, out)


def cmd_tune(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Search model settings on a holdout within a time budget."""
    from jobs import tune

    engine = _engine(settings)
    tune.run_tune(
        engine,
        settings,
        budget_seconds=args.budget,
        write=args.write,
        out=out,
    )


def cmd_explain(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Print why the published model scores a movie for a user."""
    from jobs import quality

    engine = _engine(settings)
    explanation = quality.explain(engine, args.user, args.title, movie_id=args.movie_id)
    quality.print_explanation(explanation, out, limit=args.n)


def cmd_refresh(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Recompute the lists of users whose inputs changed, without retraining."""
    from jobs.refresh import refresh

    engine = _engine(settings)
    summary = refresh(engine)
    since = summary.since.isoformat(sep=" ")
    if not summary.n_users:
        print(
            f"no user changed since {since}; run {summary.run_id} is unchanged",
            file=out,
        )
        return
    print(
        f"refreshed {summary.n_users} users of run {summary.run_id} changed since "
        f"{since} ({summary.n_new_users} without a list): {summary.n_model} from "
        f"the model, {summary.n_popular} by popularity, {summary.n_rows} rows "
        f"in {summary.seconds:.2f} s",
        file=out,
    )


def cmd_schedule(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Run the main job on its cron schedule and refresh in between, until stopped."""
    from jobs import schedule

    engine = _engine(settings)
    schedule.serve(engine, settings, run_now=args.run_now)


def cmd_recommend(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Print a user's published recommendations."""
    from jobs import published

    engine = _engine(settings)
    migrate.require_current(engine)
    run_id = published.require_published(engine)
    user_id, movies = published.user_recommendations(engine, args.user, args.n)
    print(f"recommendations for user_id {user_id} (run {run_id}):", file=out)
    if not movies:
        print(f"  none: {published.why_no_list(engine, user_id, run_id)}", file=out)
    for movie in movies:
        note = " (popular)" if movie.source == "popular" else ""
        print(f"  {movie.rank:3d}. {movie.title}{note}  [{movie.score:.3f}]", file=out)
        if movie.because is not None:
            print(f"       because you liked {movie.because}", file=out)


def cmd_similar(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Print a movie's published similar movies."""
    from jobs import published

    if args.title is None and args.movie_id is None:
        raise UsageError("similar needs a TITLE or --movie-id")
    engine = _engine(settings)
    migrate.require_current(engine)
    run_id = published.require_published(engine)
    movie_id, title, movies = published.similar_movies(
        engine, args.title, args.n, movie_id=args.movie_id
    )
    print(f"movies similar to {title} (movie_id {movie_id}, run {run_id}):", file=out)
    if not movies:
        print(
            "  none: the movie has fewer positives than [output] "
            f"similar_min_support = {settings.output.similar_min_support}",
            file=out,
        )
    for movie in movies:
        print(f"  {movie.rank:3d}. {movie.title}  [{movie.score:.3f}]", file=out)


def cmd_demo(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Set up everything and print the demo user's lists."""
    from jobs import demo

    engine = _engine(settings, create=True)
    source = Path(args.movielens_dir) if args.movielens_dir else None
    demo.run_demo(engine, settings, out, source, download=not args.no_download)


def positive_int(text: str) -> int:
    """Parse a whole number of at least 1, for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="jobs",
        description="movie-recs: train ALS recommendations from SQL tables and "
        "publish them back. Run it as 'python -m jobs', by path ('.venv/bin/jobs') "
        "or as 'movie-recs', because a bare 'jobs' is a shell builtin.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common_options(parser, suppress=False)
    parser.add_argument(
        "--version", action="version", version=f"movie-recs {__version__}"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_db_commands(commands)
    _add_data_commands(commands)
    _add_job_commands(commands)
    _add_schedule_commands(commands)
    _add_list_commands(commands)
    _add_quality_commands(commands)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Add the options every command takes, before or after its name.

    On subcommands the defaults are SUPPRESS, so that an option given before
    the subcommand name is not reset to its default by the subcommand.
    """
    default: Any = {"default": argparse.SUPPRESS} if suppress else {}
    flag_default: Any = (
        {"default": argparse.SUPPRESS} if suppress else {"default": False}
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="settings file (default: $MOVIE_RECS_CONFIG, else ./config.toml "
        "when present, else built-in defaults)",
        **default,
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy database URL; overrides $DATABASE_URL and [database] url "
        "(default: sqlite:///movie_recs.db in the working directory)",
        **default,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log DEBUG records and print tracebacks of errors",
        **flag_default,
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="log only warnings and errors",
        **flag_default,
    )


def _subcommand(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Command,
    help_text: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    _add_common_options(parser, suppress=True)
    parser.set_defaults(handler=handler)
    return parser


def _add_db_commands(commands: argparse._SubParsersAction) -> None:
    db_parser = commands.add_parser(
        "db",
        help="database schema migrations",
        description="database schema migrations",
    )
    db_commands = db_parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    upgrade = _subcommand(
        db_commands, "upgrade", cmd_db_upgrade, "apply Alembic migrations"
    )
    upgrade.add_argument(
        "revision",
        nargs="?",
        default="head",
        help="target revision (default: head, the newest)",
    )
    downgrade = _subcommand(
        db_commands, "downgrade", cmd_db_downgrade, "revert Alembic migrations"
    )
    downgrade.add_argument(
        "revision", help="target revision; 'base' drops every movie-recs table"
    )
    _subcommand(
        db_commands,
        "current",
        cmd_db_current,
        "print the database's revision and the newest one",
    )


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    ingest_parser = _subcommand(
        commands,
        "ingest",
        cmd_ingest,
        "load a MovieLens folder or zip (ml-1m, ml-100k or the CSV family); "
        "loading it again changes nothing",
    )
    ingest_parser.add_argument(
        "source", metavar="DIR", help="folder (or .zip) with the MovieLens files"
    )

    fav_parser = commands.add_parser(
        "favorites", help="manage favorites", description="manage favorites"
    )
    fav_commands = fav_parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    add = _subcommand(
        fav_commands,
        "add",
        cmd_favorites_add,
        "add favorites by title for a user; a new name creates the user",
    )
    add.add_argument("user", metavar="USER", help="a user_id, or a user name")
    add.add_argument(
        "titles",
        metavar="TITLE",
        nargs="*",
        help="movie titles as people type them: any case, 'The X (1984)' finds "
        "'X, The (1984)', the year may be left out when unique",
    )
    add.add_argument(
        "--movie-id",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="add a movie by movie_id, for a title that matches several movies "
        "(repeatable)",
    )


def _add_job_commands(commands: argparse._SubParsersAction) -> None:
    _subcommand(
        commands,
        "run-once",
        cmd_run_once,
        "the main job: retrain on the current data and publish new lists",
    )
    demo_parser = _subcommand(
        commands,
        "demo",
        cmd_demo,
        "migrate, ingest MovieLens 1M, add a demo user, run the job and print "
        "their top 10 and the movies similar to Jaws (1975)",
    )
    demo_parser.add_argument(
        "--movielens-dir",
        metavar="DIR",
        help="folder with ml-1m/ or the ml-1m files (default: $MOVIELENS_DIR, "
        "else download from GroupLens)",
    )
    demo_parser.add_argument(
        "--no-download",
        action="store_true",
        help="do not download; use synthetic data when no folder is given",
    )


def _add_schedule_commands(commands: argparse._SubParsersAction) -> None:
    _subcommand(
        commands,
        "refresh",
        cmd_refresh,
        "compute lists for users whose ratings or favorites changed since the "
        "published run, against its model, without retraining",
    )
    schedule_parser = _subcommand(
        commands,
        "schedule",
        cmd_schedule,
        "run the main job on [schedule] cron and refresh changed users every "
        "[schedule] refresh_minutes, until SIGTERM or SIGINT",
    )
    schedule_parser.add_argument(
        "--run-now",
        action="store_true",
        help="also start a full run at once, before the first cron time",
    )


def _add_list_commands(commands: argparse._SubParsersAction) -> None:
    recommend = _subcommand(
        commands, "recommend", cmd_recommend, "print a user's published recommendations"
    )
    recommend.add_argument("user", metavar="USER", help="a user_id, or a user name")
    recommend.add_argument(
        "-n",
        type=positive_int,
        default=10,
        help="how many to print, at most [output] n (default: 10)",
    )
    similar = _subcommand(
        commands, "similar", cmd_similar, "print a movie's published similar movies"
    )
    similar.add_argument(
        "title", metavar="TITLE", nargs="?", help="a movie title (or --movie-id)"
    )
    similar.add_argument(
        "--movie-id",
        type=int,
        metavar="ID",
        help="the movie by movie_id, for a title that matches several movies",
    )
    similar.add_argument(
        "-n", type=positive_int, default=10, help="how many to print (default: 10)"
    )


def _add_quality_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = _subcommand(
        commands,
        "evaluate",
        cmd_evaluate,
        "measure the [model] settings and a popularity baseline on a holdout of "
        "the current data ([evaluation] settings); writes nothing",
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print the figures as JSON"
    )
    tune = _subcommand(
        commands,
        "tune",
        cmd_tune,
        "search factors, regularization, alpha, iterations and confidence on a "
        "holdout within a time budget, and print what it tried",
    )
    tune.add_argument(
        "--budget",
        type=positive_int,
        default=600,
        metavar="SECONDS",
        help="stop starting new trials after this many seconds (default: 600)",
    )
    tune.add_argument(
        "--write",
        action="store_true",
        help="write the best settings into the [model] section of the settings "
        "file (--config, else ./config.toml), keeping its comments",
    )
    explain = _subcommand(
        commands,
        "explain",
        cmd_explain,
        "show which of a user's own positives make the published model score a "
        "movie for them, largest contribution first",
    )
    explain.add_argument("user", metavar="USER", help="a user_id, or a user name")
    explain.add_argument(
        "title", metavar="TITLE", nargs="?", help="a movie title (or --movie-id)"
    )
    explain.add_argument(
        "--movie-id",
        type=int,
        metavar="ID",
        help="the movie by movie_id, for a title that matches several movies",
    )
    explain.add_argument(
        "-n",
        type=positive_int,
        help="print the n largest contributions and the sum of the rest (default: all)",
    )
