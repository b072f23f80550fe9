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


def examples(*lines: str) -> str:
    """A command's help epilog: the example command lines, kept as written."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


try:  # newer typer carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:
    from click.exceptions import ClickException, NoArgsIsHelpError


class _Commands(typer.core.TyperGroup):
    """The command group, with a usage error (a missing argument, an unknown option or
    command, a value of the wrong type) on one line, ``error: ... (see nnback train
    --help)``, exit 2, like every other error, and as a JSON error line when the command
    line asks for ``--log-format json``; a bare ``nnback`` still prints the help."""

    def main(self, args=None, *rest, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(args, *rest, standalone_mode=False, **kwargs)
        try:
            code = super().main(args, *rest, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except ClickException as exc:
            from nnback.errors import one_line

            context = getattr(exc, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            message = f"{one_line(exc.format_message()).rstrip('.')}{hint}"
            if _asks_for_json_log(sys.argv[1:] if args is None else list(args)):
                from nnback.train.console import json_line

                typer.echo(json_line("error", message=message, exit_code=exc.exit_code), err=True)
            else:
                typer.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _asks_for_json_log(words: list[str]) -> bool:
    """Whether a command line that failed to parse holds ``--log-format json``."""
    return "--log-format=json" in words or any(
        word == "--log-format" and value == "json" for word, value in zip(words, words[1:], strict=False))


app = typer.Typer(
    cls=_Commands,
    name="nnback",
    help="Train neural networks described in YAML experiment files, with exact backpropagation.",
    epilog=examples("nnback init experiment.yaml", "nnback train experiment.yaml", "nnback runs",
                    "nnback schema optimizer"),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags without a <bool> type, examples kept as written
)
data_app = typer.Typer(help="Download MNIST or Fashion-MNIST (not shipped).",
                       no_args_is_help=True, rich_markup_mode=None)
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
    """Print an ``NnbackError`` as its message, no traceback, and exit with its code.

    With ``--log-format json`` each line is a JSON object ``{"time", "event": "error",
    "message", "exit_code"}``.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from nnback.errors import EXIT_SIGINT, NnbackError

        def fail(lines, code, prefix="error: "):
            for line in lines:
                if kwargs.get("log_format") == LogFormat.json:
                    from nnback.train.console import json_line

                    line = json_line("error", message=line, exit_code=code)
                else:
                    line = prefix + line
                typer.echo(line, err=True)
            return typer.Exit(code)

        try:
            code = command(*args, **kwargs)
        except NnbackError as exc:
            raise fail(str(exc).splitlines() or [type(exc).__name__], exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail(["interrupted"], EXIT_SIGINT, prefix="") from None
        raise typer.Exit(code or 0)

    return wrapper


ConfigArg = typer.Argument(..., metavar="CONFIG", help="Experiment YAML file.", show_default=False)
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE",
                      help="Override a key: --set optimizer.lr=0.01 (repeatable).")


@app.command(epilog=examples(
    "nnback train config/digits-mlp.yaml",
    "nnback train config/digits-mlp.yaml --set optimizer.lr=0.01 --set train.epochs=5",
    "nnback train cfg.yaml --out runs/job1 --resume --skip-if-done --max-time 2h",
))
@user_errors
def train(
    config: Path = ConfigArg,
    set_: list[str] | None = SetOpt,
    out: Path | None = typer.Option(None, "--out", metavar="DIR",
                                    help="Write the run exactly in this folder."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Resume even if the saved config differs."),
    max_time: str | None = typer.Option(
        None, "--max-time", metavar="DURATION",
        help="Wall-time budget (30m, 2h): stop cleanly with a checkpoint before it."),
    skip_if_done: bool = typer.Option(
        False, "--skip-if-done", help="Exit 0 at once if --out holds a completed run of this config."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="BLAS threads (default: train.threads, else chosen from the work)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only warnings and errors."),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="Console output format."),
):
    """Train an experiment into a run folder.

    Validates the config and the data, trains, and writes checkpoints, metrics, the
    model and a summary to the run folder.
    """
    from nnback.train.console import Console
    from nnback.train.run import train as run_train

    console = Console("quiet" if quiet else log_format.value)
    return run_train(config, overrides=set_ or (), out=out, resume=resume, force=force,
                     max_time=max_time, skip_if_done=skip_if_done, threads=threads, console=console)


@app.command(epilog=examples(
    "nnback validate config/digits-mlp.yaml",
    "nnback validate cfg.yaml --set model.mlp.hidden=[256,128]",
))
@user_errors
def validate(config: Path = ConfigArg, set_: list[str] | None = SetOpt):
    """Check a config and its data without training.

    Prints the resolved config and a table of the layers with their shapes and sizes.
    """
    from nnback.commands.validate import validate_report

    typer.echo(validate_report(config, set_ or ()))


RunArg = typer.Argument(..., metavar="RUN", help="Run folder, model.npz or checkpoint .npz.",
                        show_default=False)


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


@app.command("eval", epilog=examples(
    "nnback eval runs/digits-mlp/20261128-164443",
    "nnback eval runs/digits-mlp/20261128-164443 --split val --format json",
    "nnback eval run/model.npz --data more.csv",
))
@user_errors
def eval_(
    run: Path = RunArg,
    split: SplitName | None = typer.Option(None, "--split", show_default=False,
                                           help="Split of the run's own data [default: test]."),
    data: Path | None = typer.Option(None, "--data", metavar="FILE",
                                     help="A labelled .csv/.npz file instead (all its rows)."),
    format_: OutputFormat = typer.Option(OutputFormat.text, "--format", help="Output format."),
    json_: bool = typer.Option(False, "--json", help="The same as --format json."),
):
    """Metrics of saved weights on a split or a labelled file.

    Loss; for classifiers accuracy, per-class precision, recall and F1 with their macro
    averages and the confusion matrix; for regression MAE, RMSE and R².
    """
    from nnback.commands.evaluate import eval_report
    from nnback.errors import NnbackError

    if split is not None and data is not None:
        raise NnbackError(f"--split {split.value} with --data: --data evaluates every row of its file; "
                          "give one or the other")
    split = split or SplitName.test
    typer.echo(eval_report(run, split.value, data, as_json=json_ or format_ is OutputFormat.json))


@app.command(epilog=examples(
    "nnback predict runs/iris/20261128-164443 new-flowers.csv",
    "nnback predict run/model.npz images.npy -o predictions.csv",
))
@user_errors
def predict(
    run: Path = RunArg,
    inputs: Path = typer.Argument(..., metavar="INPUT", help="Raw inputs: .csv (header), .npy, .npz or IDX.",
                                  show_default=False),
    out: Path | None = typer.Option(None, "-o", "--out", metavar="FILE",
                                    help="Write the CSV here (default stdout)."),
):
    """Predictions for raw inputs, preprocessed as in training.

    Writes a CSV of class names and probabilities, or of predicted values.
    """
    from nnback.commands.predict import predict_file

    text = predict_file(run, inputs, out)
    if text is not None:
        typer.echo(text, nl=False)


class ExportDtype(str, Enum):
    float32 = "float32"
    float64 = "float64"


@app.command(epilog=examples(
    "nnback export runs/digits-mlp/20261128-164443",
    "nnback export run/model.npz -o digits.onnx --check",
    "nnback export runs/iris/20261128-164443 --data data/iris.csv --dtype float64",
))
@user_errors
def export(
    run: Path = RunArg,
    out: Path | None = typer.Option(
        None, "-o", "--out", help="The .onnx file (default RUN/model.onnx, or the weights file's name)."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX operator set (default 17)."),
    dtype: ExportDtype = typer.Option(ExportDtype.float32, "--dtype",
                                      help="Weights and arithmetic; inputs and outputs are float32."),
    check: bool = typer.Option(False, "--check",
                               help="Require the ONNX Runtime comparison (run whenever it is installed)."),
    data: Path | None = typer.Option(None, "--data",
                                     help="Raw inputs to compare on instead of the test split."),
):
    """Write the model as ONNX, preprocessing included, checked against nnback in ONNX Runtime."""
    from nnback.commands.export import export_run

    lines, code = export_run(run, out, opset, dtype.value, check, data)
    for line in lines:
        typer.echo(line, err=line.startswith("error:"))
    return code


@app.command(epilog=examples(
    "nnback gradcheck config/digits-mlp.yaml",
    "nnback gradcheck cfg.yaml --batch 2 --threshold 1e-7",
))
@user_errors
def gradcheck(
    config: Path = ConfigArg,
    set_: list[str] | None = SetOpt,
    batch: int = typer.Option(8, "--batch", min=1, help="Training rows to check on."),
    threshold: float = typer.Option(1e-6, "--threshold", help="Largest relative error that passes."),
):
    """Check the network's gradients against numerical ones (float64).

    Compares the analytic gradient of every parameter of the configured network and
    loss with a centred difference on a few training rows.
    """
    from nnback.commands.gradcheck import gradcheck_report
    from nnback.errors import EXIT_FAILURE

    text, ok = gradcheck_report(config, set_ or (), batch, threshold)
    typer.echo(text)
    return 0 if ok else EXIT_FAILURE


@data_app.command("fetch", epilog=examples(
    "nnback data fetch mnist",
    "nnback data fetch fashion-mnist --dir /scratch/fashion",
))
@user_errors
def data_fetch(
    name: str = typer.Argument(..., metavar="NAME", help="mnist or fashion-mnist.", show_default=False),
    dir_: Path | None = typer.Option(None, "--dir", metavar="DIR",
                                     help="Target folder (default data/<name>)."),
):
    """Download a data set and verify it.

    Fetches the four IDX files, checks their SHA-256 sums and skips files already verified.
    """
    from nnback.commands.data import fetch_lines

    for line in fetch_lines(name, dir_ or Path("data") / name):
        typer.echo(line)


class RunsFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command(epilog=examples(
    "nnback runs",
    "nnback runs runs/digits-mlp --sort val_loss",
    "nnback runs runs --status completed,early_stopped --format csv > runs.csv",
))
@user_errors
def runs(
    folder: Path = typer.Argument(Path("runs"), metavar="DIR", help="Folder searched recursively for runs."),
    sort: str | None = typer.Option(None, "--sort", metavar="COLUMN",
                                    help="Column to sort by: val_loss, optimizer.lr, ..."),
    status: str | None = typer.Option(None, "--status", metavar="STATUS[,STATUS]",
                                      help="Only these statuses (comma-separated)."),
    format_: RunsFormat = typer.Option(RunsFormat.table, "--format", help="Output format."),
):
    """Compare the runs under a folder.

    Status, the hyperparameters that differ, best validation and test metrics, time.

    Runs are grouped by experiment name; each group shows the settings in which its runs
    differ (long values shortened; the csv and json formats keep them whole).
    """
    from nnback.commands.runs import runs_table

    typer.echo(runs_table(folder, sort=sort, status=status, fmt=format_.value))


@app.command(epilog=examples(
    "nnback plot runs/digits-mlp/20261128-164443",
    "nnback plot runs/digits-mlp/* -o digits.png --width 12 --height 7",
))
@user_errors
def plot(
    runs_: list[Path] = typer.Argument(..., metavar="RUN...", help="Run folders; several are overlaid.",
                                       show_default=False),
    out: Path = typer.Option(Path("plot.png"), "--out", "-o", metavar="FILE", help="PNG file to write."),
    width: float = typer.Option(15.0, "--width", help="Figure width in inches."),
    height: float = typer.Option(8.5, "--height", help="Figure height in inches."),
    dpi: int = typer.Option(100, "--dpi", help="Pixels per inch."),
):
    """Plot the curves of one or more runs to a PNG.

    Loss, accuracy, learning rate and gradient flow; several runs are overlaid.
    """
    from nnback.commands.plot import plot_runs

    typer.echo(f"wrote {plot_runs(runs_, out, width=width, height=height, dpi=dpi)}")


@app.command(epilog=examples("nnback diagnose runs/digits-mlp/20261128-164443"))
@user_errors
def diagnose(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder (holds diagnostics.jsonl).",
                               show_default=False),
):
    """Explain a run's gradient-flow diagnostics and warnings."""
    from nnback.commands.diagnose import diagnose_run

    typer.echo(diagnose_run(run))


@app.command(epilog=examples(
    "nnback explain config/digits-mlp.yaml",
    "nnback explain cfg.yaml --set model.layers.0.units=32",
))
@user_errors
def explain(config: Path = ConfigArg, set_: list[str] | None = SetOpt):
    """Each layer's forward and backward formulas, shapes and cache."""
    from nnback.commands.explain import explain_config

    typer.echo(explain_config(config, set_ or ()))


@app.command(epilog=examples("nnback schema", "nnback schema optimizer", "nnback schema data.spiral"))
@user_errors
def schema(
    section: str | None = typer.Argument(None, metavar="SECTION",
                                         help="Only this section: train, optimizer, data.spiral, ..."),
):
    """The YAML reference, generated from the schema.

    Every key with its type, default, bounds and meaning.
    """
    from nnback.commands.schema import schema_text

    typer.echo(schema_text(section))


@app.command(epilog=examples("nnback init", "nnback init my-experiment.yaml --force"))
@user_errors
def init(
    path: Path = typer.Argument(Path("experiment.yaml"), metavar="PATH", help="File to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
):
    """Write a commented starter experiment that validates as written."""
    import shlex

    from nnback.commands.init import write_starter

    typer.echo(f"wrote {write_starter(path, force=force)}; next: nnback train {shlex.quote(str(path))}")


@app.command(epilog=examples(
    "nnback sweep config/sweeps/digits-grid.yaml --dry-run",
    "nnback sweep config/sweeps/digits-grid.yaml --workers 2",
    "nnback sweep config/sweeps/digits-random.yaml --scheduler tcp://10.0.0.1:8786",
))
@user_errors
def sweep(
    sweep_file: Path = typer.Argument(..., metavar="SWEEP", help="Sweep YAML file.", show_default=False),
    workers: int = typer.Option(1, "--workers", help="Trials at once on this machine."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", metavar="ADDRESS",
        help="Run trials on a Dask cluster: tcp://host:8786, or local:N workers."),
    out: Path | None = typer.Option(None, "--out", metavar="DIR",
                                    help="The sweep folder (default <output.dir>/<name>)."),
    set_: list[str] | None = SetOpt,
    max_trials: int | None = typer.Option(None, "--max-trials", help="Run at most this many trials."),
    max_time: str | None = typer.Option(
        None, "--max-time", metavar="DURATION",
        help="Wall-time budget (30m, 2h): stop trials with checkpoints before it."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed trials again."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed trial."),
    force: bool = typer.Option(False, "--force", help="Continue even if the sweep file changed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the trials and exit."),
):
    """Train many variants of an experiment (grid, random or TPE), locally or on Dask."""
    from nnback.commands.sweep import SweepOptions, run_sweep

    options = SweepOptions(workers=workers, scheduler=scheduler, out=out, overrides=tuple(set_ or ()),
                           max_trials=max_trials, max_time=max_time, retry_failed=retry_failed,
                           fail_fast=fail_fast, force=force, dry_run=dry_run)
    return run_sweep(sweep_file, options)


def main():
    """Console-script entry point."""
    app(prog_name="nnback")


if __name__ == "__main__":
    sys.exit(main())
