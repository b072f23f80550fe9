import json
import struct
import sys

import numpy as np
import pytest
from test_runs import make_run

from nnback.commands.plot import make_figure, plot_runs
from nnback.commands.runs import load_run
from nnback.errors import NnbackError


def diagnostics_records(steps=(10, 20, 30), scale=1.0):
    """Records shaped as DiagnosticsRecorder writes them, for a Linear-ReLU-Linear net."""
    return [{"step": s, "epoch": 1, "lr": 0.1,
             "params": {"0.W": {"weight_norm": 3.0, "grad_norm": scale / s, "update_ratio": 1e-3,
                                "matrix": True},
                        "0.b": {"weight_norm": 0.1, "grad_norm": 0.1, "update_ratio": None, "matrix": False},
                        "2.W": {"weight_norm": 2.0, "grad_norm": 0.0, "update_ratio": 2e-3, "matrix": True}},
             "layers": [{"layer": 0, "type": "Linear", "dx_norm": 0.1},
                        {"layer": 1, "type": "ReLU", "dx_norm": 0.2, "mean": 0.3, "std": 0.5, "dead": 0.1},
                        {"layer": 2, "type": "Linear", "dx_norm": 0.4}],
             "depth_ratio": 0.5} for s in steps]


def with_diagnostics(folder, records):
    (folder / "diagnostics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png_of_the_requested_size(tmp_path):
    run = with_diagnostics(make_run(tmp_path / "run"), diagnostics_records())
    out = plot_runs([run], tmp_path / "curves.png", width=12, height=7, dpi=80)
    assert out == tmp_path / "curves.png"
    assert png_size(out) == (12 * 80, 7 * 80)


def test_several_runs_give_one_line_each_per_panel(tmp_path):
    runs = [load_run(with_diagnostics(make_run(tmp_path / f"r{i}", lr=lr), diagnostics_records(scale=lr)))
            for i, lr in enumerate((0.1, 0.01, 0.001))]
    fig = make_figure(runs)
    loss, acc, lr, grad, ratio, depth = fig.axes
    assert len(loss.get_lines()) == 2 * 3  # train and validation per run
    assert len(acc.get_lines()) == len(lr.get_lines()) == len(depth.get_lines()) == 3
    assert len(grad.get_lines()) == 3 * 2  # per run, per weight matrix
    assert len(ratio.get_lines()) == 3 * 2 + 1  # and the healthy 1e-3 reference
    assert ratio.get_lines()[-1].get_ydata()[0] == 1e-3
    assert [line.get_color() for line in acc.get_lines()] == [line.get_color() for line in lr.get_lines()]
    assert len({line.get_color() for line in acc.get_lines()}) == 3
    np.testing.assert_allclose(acc.get_lines()[1].get_ydata(), [0.5, 0.75, 0.7])  # 1 - val_loss / 2
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["digits-mlp (lr=0.1)", "digits-mlp (lr=0.01)", "digits-mlp (lr=0.001)"]
    assert [t.get_text() for t in grad.get_legend().get_texts()] == ["0.W", "2.W"]
    assert grad.get_yscale() == ratio.get_yscale() == "log"
    assert np.isnan(grad.get_lines()[1].get_ydata()).all()  # zero gradients leave a gap on a log axis
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_loss_uses_a_log_scale_only_when_it_spans_a_decade(tmp_path):
    flat = load_run(make_run(tmp_path / "flat", val_losses=(1.0, 0.8, 0.7)))
    steep = load_run(make_run(tmp_path / "steep", val_losses=(3.0, 0.1, 0.01)))
    assert make_figure([flat]).axes[0].get_yscale() == "linear"
    assert make_figure([steep]).axes[0].get_yscale() == "log"


def test_runs_without_diagnostics_say_how_to_get_them(tmp_path):
    fig = make_figure([load_run(make_run(tmp_path / "run"))])
    texts = [t.get_text() for t in fig.axes[3].texts]
    assert texts == ["no diagnostics.jsonl\n(set train.diagnostics: {every: 100})"]


def test_plot_needs_run_folders_and_matplotlib(tmp_path, monkeypatch):
    with pytest.raises(NnbackError, match="not a run folder"):
        plot_runs([tmp_path], tmp_path / "x.png")
    with pytest.raises(NnbackError, match="at least one run"):
        plot_runs([], tmp_path / "x.png")
    run = make_run(tmp_path / "run")
    with pytest.raises(NnbackError, match=f"^{tmp_path}/missing/x.png: no folder {tmp_path}/missing "):
        plot_runs([run], tmp_path / "missing" / "x.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(NnbackError, match=r"plotting needs matplotlib: pip install 'nnback\[plot\]'"):
        plot_runs([run], tmp_path / "x.png")


def test_a_plot_is_written_atomically(tmp_path, monkeypatch):
    """A plot that fails half-way leaves the earlier plot.png whole and no temporary file."""
    from matplotlib.figure import Figure

    run = make_run(tmp_path / "run")
    out = tmp_path / "plot.png"
    out.write_bytes(b"earlier plot")

    def half_written(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(KeyboardInterrupt):
        plot_runs([run], out)
    assert out.read_bytes() == b"earlier plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "run"]


@pytest.mark.parametrize("size, message", [
    ({"dpi": 0}, "--dpi 0: must be from 1 to 2400"),
    ({"dpi": -5}, "--dpi -5: must be from 1 to 2400"),
    ({"dpi": 10**9}, "--dpi 1000000000: must be from 1 to 2400"),
    ({"width": 0}, "--width 0: must be a finite size"),
    ({"height": float("nan")}, "--height nan: must be a finite size"),
    ({"width": float("inf")}, "--width inf: must be a finite size"),
    ({"width": 0.001}, "--width 0.001: must be a finite size"),
    ({"width": 1e6}, "--width 1e\\+06: must be a finite size in inches of 1 to 32768 pixels"),
    ({"width": 300, "height": 300, "dpi": 100}, "is 900 megapixels; at most 100"),
])
def test_an_image_without_pixels_or_too_many_is_a_user_error(tmp_path, size, message):
    run = make_run(tmp_path / "run")
    with pytest.raises(NnbackError, match=message):
        plot_runs([run], tmp_path / "x.png", **size)
    assert not (tmp_path / "x.png").exists()


def test_legend_of_several_experiments_names_each_and_stays_short(tmp_path):
    runs = [load_run(make_run(tmp_path / "d" / str(i), lr=lr)) for i, lr in enumerate((0.1, 0.01))]
    runs += [load_run(make_run(tmp_path / "s" / str(i), name="spiral", units=units))
             for i, units in enumerate((8, 64))]
    fig = make_figure(runs)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "digits-mlp (lr=0.1)", "digits-mlp (lr=0.01)", "spiral (units=8)", "spiral (units=64)"]
