"""Compare finished runs: chosen TensorBoard scalars over steps, and a table of their end values.

    python -m tools.compare runs/cpu-ppo runs/cpu-random --out compare.png
    python -m tools.compare runs/a runs/b --scalars policy/motion_enrichment mae/heldout_loss \\
        --labels PPO random --out fig.png --table end.md --last 5 --smooth 0.6

Each RUN_DIR is a ``train_joint.py`` output folder (its ``tb/``). The figure has one panel per
scalar (x: the MAE step), one colour per run; a panel of a loss is drawn with its references
in the same colour, thinner: ``mae/heldout_loss`` with the trivial predictors on the same
held-out clips (``mae/heldout_copy`` dashed, ``mae/heldout_mean_visible`` dotted),
``mae/loss`` with ``mae/copy_loss`` and ``mae/mean_visible_loss``, ``eval/loss`` with
``eval/loss_random`` and ``eval/loss_oracle``. Without ``--scalars``: the motion enrichment,
the held-out loss and the benchmark score, those that some run logged.

The table (printed as markdown; ``--table`` writes it, ``.csv`` or ``.md`` by the suffix) has
one row per run: its last step and, per scalar, the mean of its last ``--last`` logged values
(default 1: the end value). ``--smooth`` (0 to 1, as TensorBoard's slider) smooths the curves
only, never the table.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

DEFAULT_SCALARS = ("policy/motion_enrichment", "mae/heldout_loss", "eval/score")
REFERENCES = {  # a loss and the references drawn beside it: (tag, line style)
    "mae/heldout_loss": (("mae/heldout_copy", "--"), ("mae/heldout_mean_visible", ":")),
    "mae/loss": (("mae/copy_loss", "--"), ("mae/mean_visible_loss", ":")),
    "eval/loss": (("eval/loss_random", "--"), ("eval/loss_oracle", ":")),
}
LABELS = {
    "policy/motion_enrichment": "motion enrichment (1 = chance)",
    "mae/heldout_loss": "held-out MAE loss",
    "mae/loss": "MAE loss (own masks)",
    "eval/score": "benchmark score (0 random, 100 oracle)",
    "eval/loss": "frozen-MAE loss (policy's masks)",
    "policy/entropy": "policy entropy",
}

Curves = dict[str, list[tuple[int, float]]]


def read_scalars(run_dir: str | Path) -> Curves:
    """Every scalar of a run's TensorBoard log: ``{tag: [(step, value), ...]}`` in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(run_dir) / "tb"
    if not tb.is_dir():
        raise FileNotFoundError(f"{run_dir} has no tb/ folder: is it a train_joint.py output_dir?")
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0, "images": 1, "histograms": 1})
    events.Reload()
    curves = {}
    for tag in events.Tags()["scalars"]:
        by_step = {e.step: e.value for e in events.Scalars(tag)}  # a resumed run may log a step twice: the last
        curves[tag] = sorted(by_step.items())
    return curves


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    if weight <= 0:
        return list(values)
    out, average = [], 0.0
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**index))
    return out


def end_values(runs: dict[str, Curves], scalars: list[str], last: int = 1) -> list[dict[str, object]]:
    """One row per run: ``run``, ``step`` (its last logged step) and per scalar the mean of its last
    ``last`` values (None where the run did not log it)."""
    rows = []
    for label, curves in runs.items():
        row: dict[str, object] = {"run": label,
                                  "step": max((points[-1][0] for points in curves.values() if points), default=0)}
        for tag in scalars:
            points = curves.get(tag, [])[-last:]
            row[tag] = sum(value for _, value in points) / len(points) if points else None
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, object]], kind: str = "md") -> str:
    """The rows as a markdown table (``md``) or CSV (``csv``)."""
    columns = list(rows[0])
    if kind == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        return buffer.getvalue()

    def cell(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def draw(runs: dict[str, Curves], scalars: list[str], path: str | Path, *, title: str = "",
         smoothing: float = 0.0) -> Path:
    """One panel per scalar, one colour per run, the references of a loss beside it; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    columns = 2 if len(scalars) == 4 else min(len(scalars), 3)
    rows = -(-len(scalars) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, tag in enumerate(scalars):
        ax = axes[index // columns, index % columns]
        styles = []
        for number, (label, curves) in enumerate(runs.items()):
            colour = colours[number % len(colours)]
            if curves.get(tag):
                steps, values = zip(*curves[tag])
                ax.plot(steps, smooth(list(values), smoothing), color=colour, label=label, linewidth=1.6)
            for reference, style in REFERENCES.get(tag, ()):
                if curves.get(reference):
                    steps, values = zip(*curves[reference])
                    ax.plot(steps, values, color=colour, linestyle=style, linewidth=0.9, alpha=0.8)
                    styles.append((reference, style))
        ax.set_title(LABELS.get(tag, tag), fontsize=10)
        ax.set_xlabel("MAE step")
        ax.set_ylabel(tag, fontsize=8)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        for reference, style in dict(styles).items():  # one legend entry per reference kind
            handles.append(Line2D([], [], color="grey", linestyle=style, linewidth=0.9))
            labels.append(reference.split("/")[-1].replace("heldout_", "") + " (same colour as its run)")
        ax.legend(handles, labels, fontsize=7)
    for index in range(len(scalars), rows * columns):
        axes[index // columns, index % columns].set_visible(False)
    fig.suptitle(title or f"{len(runs)} runs: " + ", ".join(runs), fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.compare", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="train_joint.py output folders")
    parser.add_argument("--scalars", nargs="+", metavar="TAG",
                        help=f"TensorBoard tags (default: those of {', '.join(DEFAULT_SCALARS)} some run logged)")
    parser.add_argument("--labels", nargs="+", help="a name per run (default: the folder names)")
    parser.add_argument("--out", help="the figure to write (PNG, PDF or SVG by the suffix)")
    parser.add_argument("--table", help="also write the table of end values here (.csv or .md)")
    parser.add_argument("--last", type=int, default=1, help="end value: the mean of the last N logged values")
    parser.add_argument("--smooth", type=float, default=0.0, help="EMA weight of the curves, 0 to 1 (not the table)")
    parser.add_argument("--title", default="", help="the figure's title")
    args = parser.parse_args(argv)
    from runtime.errors import report_error

    labels = args.labels or [Path(run).resolve().name for run in args.runs]
    if len(labels) != len(args.runs) or len(set(labels)) != len(labels):
        report_error(f"--labels needs one distinct name per run ({len(args.runs)} runs, got {labels})")
        return 2
    if args.last < 1 or not 0 <= args.smooth < 1:
        report_error("--last must be >= 1 and --smooth in [0, 1)")
        return 2
    try:
        runs = {label: read_scalars(run) for label, run in zip(labels, args.runs)}
    except FileNotFoundError as error:
        report_error(error)
        return 2
    logged = sorted({tag for curves in runs.values() for tag in curves})
    scalars = args.scalars or [tag for tag in DEFAULT_SCALARS if tag in logged]
    missing = [tag for tag in scalars if tag not in logged]
    if missing or not scalars:
        report_error(f"no run logged {', '.join(missing) or 'any of ' + ', '.join(DEFAULT_SCALARS)}; "
                     f"the logged scalars: {', '.join(logged)}")
        return 2
    rows = end_values(runs, scalars, args.last)
    print(format_table(rows), end="")
    if args.table:
        Path(args.table).write_text(format_table(rows, "csv" if args.table.endswith(".csv") else "md"))
        print(f"table: {args.table}")
    if args.out:
        print(f"figure: {draw(runs, scalars, args.out, title=args.title, smoothing=args.smooth)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
