"""The ``nnback`` command: a thin dispatch table over the package.

Each command parses its arguments, calls one function and maps errors to exit codes:
a user error (``NnbackError``) prints its one-line message(s) to stderr and exits with
its code (2 for a bad config or data); nothing else is caught. Heavy modules (numpy,
pydantic) are imported inside the commands so that ``nnback --help`` answers at once.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path

import typer

app = typer.Typer(
    name="nnback",
    help="Train neural networks described in YAML experiment files, with exact backpropagation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and inspect data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from nnback import __version__

        typer.echo(f"nnback {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
):
    """Options of the ``nnback`` command itself."""


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class SplitName(str, Enum):
    train = "train"
    val = "val"
    test = "test"


def user_errors(command):
    """Print an ``NnbackError`` as its message, no traceback, and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from nnback.errors import EXIT_SIGINT, NnbackError

        try:
            code = command(*args, **kwargs)
        except NnbackError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_SIGINT) from None
        raise typer.Exit(code or 0)

    return wrapper


ConfigArg = typer.Argument(..., help="Experiment YAML file.", show_default=False)
SetOpt = typer.Option(None, "--set", help="Override a key: --set optimizer.lr=0.01 (repeatable).")


@app.command()
@user_errors
def train(
    config: Path = ConfigArg,
    set_: list[str] | None = SetOpt,
    out: Path | None = typer.Option(None, "--out", help="Write the run exactly in this folder."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Resume even if the saved config differs."),
    max_time: str | None = typer.Option(
        None, "--max-time", help="Wall-time budget (30m, 2h): stop cleanly with a checkpoint before it."),
    skip_if_done: bool = typer.Option(
        False, "--skip-if-done", help="Exit 0 at once if --out holds a completed run of this config."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors."),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="Console output format."),
):
    """Train an experiment: validate, load data, train, write the run folder."""
    from nnback.train.console import Console
    from nnback.train.run import train as run_train

    console = Console("quiet" if quiet else log_format.value)
    return run_train(config, overrides=set_ or (), out=out, resume=resume, force=force,
                     max_time=max_time, skip_if_done=skip_if_done, console=console)


@app.command()
@user_errors
def validate(config: Path = ConfigArg, set_: list[str] | None = SetOpt):
    """Check the config and the data without training; print the resolved config and layers."""
    from nnback.commands.validate import validate_report

    typer.echo(validate_report(config, set_ or ()))


RunArg = typer.Argument(..., help="Run folder, model.npz or checkpoint .npz.", show_default=False)


@app.command("eval")
@user_errors
def eval_(
    run: Path = RunArg,
    split: SplitName = typer.Option(SplitName.test, "--split", help="Split of the run's own data."),
    data: Path | None = typer.Option(None, "--data", help="A labelled .csv/.npz file instead."),
    json_: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
):
    """Metrics (loss, accuracy) of saved weights."""
    from nnback.commands.evaluate import eval_report

    typer.echo(eval_report(run, split.value, data, as_json=json_))


@app.command()
@user_errors
def predict(
    run: Path = RunArg,
    inputs: Path = typer.Argument(..., help="Raw inputs: .csv (header), .npy, .npz or IDX.",
                                  show_default=False),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write the CSV here (default stdout)."),
):
    """Predictions for raw inputs, preprocessed as in training: class names and probabilities, or values."""
    from nnback.commands.predict import predict_file

    text = predict_file(run, inputs, out)
    if text is not None:
        typer.echo(text, nl=False)


@app.command()
@user_errors
def gradcheck(
    config: Path = ConfigArg,
    set_: list[str] | None = SetOpt,
    batch: int = typer.Option(8, "--batch", min=1, help="Training rows to check on."),
    threshold: float = typer.Option(1e-6, "--threshold", help="Largest relative error that passes."),
):
    """Compare analytic and numerical gradients of the configured network and loss (float64)."""
    from nnback.commands.gradcheck import gradcheck_report
    from nnback.errors import EXIT_FAILURE

    text, ok = gradcheck_report(config, set_ or (), batch, threshold)
    typer.echo(text)
    return 0 if ok else EXIT_FAILURE


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: str = typer.Argument(..., help="mnist or fashion-mnist.", show_default=False),
    dir_: Path | None = typer.Option(None, "--dir", help="Target folder (default data/<name>)."),
):
    """Download a data set's IDX files, verify their SHA-256 sums, skip verified files."""
    from nnback.commands.data import fetch_lines

    for line in fetch_lines(name, dir_ or Path("data") / name):
        typer.echo(line)


class RunsFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
@user_errors
def runs(
    folder: Path = typer.Argument(Path("runs"), help="Folder searched recursively for runs."),
    sort: str | None = typer.Option(None, "--sort", help="Column to sort by: val_loss, optimizer.lr, ..."),
    status: str | None = typer.Option(None, "--status", help="Only these statuses (comma-separated)."),
    format_: RunsFormat = typer.Option(RunsFormat.table, "--format", help="Output format."),
):
    """Compare runs: status, differing hyperparameters, best validation and test metrics, time."""
    from nnback.commands.runs import runs_table

    typer.echo(runs_table(folder, sort=sort, status=status, fmt=format_.value))


@app.command()
@user_errors
def plot(
    runs_: list[Path] = typer.Argument(..., metavar="RUN...", help="Run folders; several are overlaid.",
                                       show_default=False),
    out: Path = typer.Option(Path("plot.png"), "--out", "-o", help="PNG file to write."),
    width: float = typer.Option(15.0, "--width", help="Figure width in inches."),
    height: float = typer.Option(8.5, "--height", help="Figure height in inches."),
    dpi: int = typer.Option(100, "--dpi", help="Pixels per inch."),
):
    """Plot loss, accuracy, learning rate and gradient flow of one or more runs to a PNG."""
    from nnback.commands.plot import plot_runs

    typer.echo(f"wrote {plot_runs(runs_, out, width=width, height=height, dpi=dpi)}")


@app.command()
@user_errors
def diagnose(
    run: Path = typer.Argument(..., help="Run folder (holds diagnostics.jsonl).", show_default=False),
):
    """Summarise a run's gradient-flow diagnostics and explain its warnings."""
    from nnback.commands.diagnose import diagnose_run

    typer.echo(diagnose_run(run))


@app.command()
@user_errors
def explain(config: Path = ConfigArg, set_: list[str] | None = SetOpt):
    """Print each layer's forward/backward formulas, shapes and cache for the configured data."""
    from nnback.commands.explain import explain_config

    typer.echo(explain_config(config, set_ or ()))


def main():
    """Console-script entry point."""
    app(prog_name="nnback")


if __name__ == "__main__":
    sys.exit(main())
