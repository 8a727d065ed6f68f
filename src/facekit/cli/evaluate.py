"""``facekit evaluate`` and ``facekit calibrate``: accuracy and calibrated scores from labelled pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import click

from facekit.cli import pipeline_option, workers_option
from facekit.cli.common import handle_errors, load_pipeline
from facekit.errors import ConfigError

if TYPE_CHECKING:
    from facekit.scoring.calibration import Calibration

_pairs_help = "LFW-format pair file: header `N` (N same-person lines, then N different-person lines) or `FOLDS N`"
_images_help = "folder holding Name/Name_0001.jpg [default: the `images` folder beside the pair file]"
_cache_help = "folder to keep each image's embedding in; a rerun (or the other command) reuses it"


def _shared_options(plot_help: str) -> Callable[[Any], Any]:
    """--plot, --no-plot, --cache, --limit, --progress and --workers: the options both commands end with."""
    options = [
        click.option("--plot", default=None, type=click.Path(dir_okay=False),
                     help=f"{plot_help} [default: OUTPUT with .png]"),
        click.option("--no-plot", is_flag=True, help="do not draw the PNG"),
        click.option("--cache", type=click.Path(file_okay=False), default=None, help=_cache_help),
        click.option("--limit", type=click.IntRange(1), default=None,
                     help="use only LIMIT same-person and LIMIT different-person pairs (of each fold), "
                          "spread evenly over the file"),
        click.option("--progress/--no-progress", default=True, show_default=True),
        workers_option,
    ]

    def decorate(func: Any) -> Any:
        for option in reversed(options):  # as if stacked as decorators, top to bottom
            func = option(func)
        return func

    return decorate


def _png_path(json_path: str, plot: Optional[str]) -> Path:
    return Path(plot) if plot else Path(json_path).with_suffix(".png")


def _report_failures(failures: dict[str, str], shown: int = 10) -> None:
    for source, message in sorted(failures.items())[:shown]:
        click.echo(f"  failed: {source}: {message}", err=True)
    if len(failures) > shown:
        click.echo(f"  ... and {len(failures) - shown} more (all listed in the JSON)", err=True)


@click.command("evaluate")
@click.option("--pairs", required=True, type=click.Path(exists=True, dir_okay=False), help=_pairs_help)
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None, help=_images_help)
@pipeline_option
@click.option("--train-pairs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="choose the threshold on this pair file and report accuracy on --pairs (instead of k-fold)")
@click.option("--folds", type=click.IntRange(2, 100), default=10, show_default=True,
              help="folds for a single-set pair file (a `FOLDS N` file uses its own)")
@click.option("--far", "far_targets", type=click.FloatRange(0, 1, min_open=True), multiple=True,
              help="false-accept rates to report TAR at [default: 0.01 and 0.001]")
@click.option("-o", "--output", default="evaluation.json", show_default=True, type=click.Path(dir_okay=False),
              help="JSON report (every figure, the failed images and each pair's score)")
@_shared_options("ROC and score-histogram PNG")
@handle_errors
def evaluate_command(pairs: str, images: Optional[str], pipeline: str, train_pairs: Optional[str], folds: int,
                     far_targets: tuple[float, ...], output: str, plot: Optional[str], no_plot: bool,
                     cache: Optional[str], limit: Optional[int], progress: bool, workers: Optional[int]) -> None:
    """Measure verification accuracy on labelled pairs.

    Embeds each image once, scores every pair and reports accuracy (k-fold, or with the
    threshold chosen on --train-pairs), ROC AUC, EER, TAR at fixed FAR, the best
    threshold, the images that failed and the time per image. A pair with a failed image
    counts as wrong in every accuracy figure and is left out of AUC, EER and TAR.

    \b
    Example:
      facekit evaluate --pairs lfw-dev/pairsDevTest.txt --images lfw-dev/images \\
          --cache /tmp/facekit-cache -o lfw-devtest.json
    """
    from facekit.studies.evaluation import DEFAULT_FAR_TARGETS, evaluate

    with load_pipeline(pipeline, workers) as built:
        report = evaluate(pairs, images, built, train_pairs=train_pairs, folds=folds,
                          far_targets=far_targets or DEFAULT_FAR_TARGETS, cache=cache, progress=progress, limit=limit)
    from facekit.io import atomic_write_text

    atomic_write_text(output, json.dumps(report.to_dict(), indent=1) + "\n")
    click.echo(report.summary())
    if report.failed_images:
        _report_failures(report.failed_images)
    click.echo(f"report: {output}")
    if not no_plot:
        from facekit.pictures.plots import evaluation_figure

        click.echo(f"plot:   {evaluation_figure(report, _png_path(output, plot))}")


@click.command("calibrate")
@click.option("--pairs", type=click.Path(exists=True, dir_okay=False), default=None,
              help=_pairs_help + "; the pairs to fit on")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None, help=_images_help)
@click.option("--scores", "scores_json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="fit on the pair scores of a `facekit evaluate` JSON report instead of embedding --pairs")
@pipeline_option
@click.option("--method", type=click.Choice(["logistic", "isotonic"]), default="logistic", show_default=True,
              help="score -> probability mapping: a smooth 2-parameter logistic fit, or a monotone step fit")
@click.option("--name", default=None, help="the calibration's name [default: OUTPUT's file name]")
@click.option("--description", default="", help="one line saying what the fit is for")
@click.option("--fitted-on", "fitted_on", default=None,
              help="what the pairs are, e.g. 'LFW dev view, pairsDevTrain' (stored in the file)")
@click.option("--threshold-rule", default="none", show_default=True,
              help="decision threshold to store: none (keep the model's), best-accuracy, or fmr=RATE")
@click.option("--check-pairs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="held-out pair file to measure the fitted calibration's ECE on")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="calibration JSON to write")
@_shared_options("calibration PNG")
@handle_errors
def calibrate_command(pairs: Optional[str], images: Optional[str], scores_json: Optional[str], pipeline: str,
                      method: str, name: Optional[str], description: str, fitted_on: Optional[str],
                      threshold_rule: str, check_pairs: Optional[str], output: str, plot: Optional[str],
                      no_plot: bool, cache: Optional[str], limit: Optional[int], progress: bool,
                      workers: Optional[int]) -> None:
    """Fit a mapping from raw score to P(same person) and to the impostor percentile.

    The result is a small JSON file: use it with `scoring: {calibration: PATH}` in a
    pipeline YAML, or ship it in a plugin through the `register_calibrations` hook.

    \b
    Example:
      facekit calibrate --pairs lfw-dev/pairsDevTrain.txt --check-pairs lfw-dev/pairsDevTest.txt \\
          --cache /tmp/facekit-cache -o my-calibration.json
    """
    import numpy as np

    from facekit.scoring.calibration import check_calibration, fit_calibration
    from facekit.studies.evaluation import score_pairs
    from facekit.studies.pairs import read_pairs

    if (pairs is None) == (scores_json is None):
        raise ConfigError("give either --pairs (and --images) to embed and fit, or --scores EVALUATION.json")
    rule = None if threshold_rule == "none" else threshold_rule
    check_file = read_pairs(check_pairs, images, limit=limit) if check_pairs else None
    check_scores = None
    if scores_json is not None:
        data = _read_evaluation(scores_json)
        records = data["pair_scores"]
        scores = np.array([np.nan if r["score"] is None else r["score"] for r in records], dtype=np.float64)
        labels = np.array([bool(r["same"]) for r in records])
        metric, pipeline_name, model = data["metric"], data.get("pipeline"), data.get("model")
        source = data.get("pairs_file") or scores_json
        if check_file is not None:
            built = load_pipeline(pipeline, workers)
            if built.embedder.metric != metric:
                raise ConfigError(f"{scores_json} holds {metric} scores but pipeline {pipeline!r} gives "
                                  f"{built.embedder.metric} scores; --check-pairs needs the same pipeline")
            check_scores = score_pairs([check_file], built, cache=cache, progress=progress)[0][0]
            built.close()
    else:
        built = load_pipeline(pipeline, workers)
        fit_file = read_pairs(pairs, images, limit=limit)  # type: ignore[arg-type]
        files = [fit_file] + ([check_file] if check_file is not None else [])
        all_scores, failures, _ = score_pairs(files, built, cache=cache, progress=progress)
        built.close()
        scores, labels = all_scores[0], fit_file.labels
        check_scores = all_scores[1] if check_file is not None else None
        metric, pipeline_name, model = built.embedder.metric, built.name, built.embedder.model_name
        source = fit_file.path
        if failures:
            click.echo(f"{len(failures)} image(s) failed; their pairs are left out of the fit:", err=True)
            _report_failures(failures)
    calibration = fit_calibration(
        scores, labels, metric, name=name or Path(output).stem, method=method, threshold_rule=rule,
        description=description, pipeline=pipeline_name, model=model,
        fitted_on={"data": fitted_on or Path(source).name, "pairs_file": Path(source).name},
    )
    if check_file is not None and check_scores is not None:
        check_calibration(calibration, check_scores, check_file.labels, Path(check_file.path).name)
    calibration.save(output)
    click.echo(calibration_summary(calibration))
    click.echo(f"calibration: {output}")
    if not no_plot:
        from facekit.pictures.plots import calibration_figure

        shown_scores, shown_labels, shown_on = scores, labels, "fitting pairs"
        if check_file is not None and check_scores is not None:
            shown_scores, shown_labels, shown_on = check_scores, check_file.labels, Path(check_file.path).name
        png = calibration_figure(calibration, shown_scores, shown_labels, _png_path(output, plot),
                                 title=f"{calibration.name}: fitted on {Path(source).name}, checked on {shown_on}")
        click.echo(f"plot:        {png}")


def _read_evaluation(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or "pair_scores" not in data or "metric" not in data:
        raise ConfigError(f"{path} is not a `facekit evaluate` report (no `pair_scores`); run `facekit evaluate` first")
    return data


def calibration_summary(calibration: "Calibration") -> str:
    """A few lines describing a calibration, with a small score table."""
    import numpy as np

    metric = calibration.metric
    ece = calibration.ece
    rows = [
        ("name", f"{calibration.name}  ({calibration.method}, {metric}, {calibration.fitted_on.get('pairs')} pairs)"),
        ("ECE", f"{ece.get('fit', float('nan')):.4f} on the fitting pairs"
                + (f", {ece['held_out']['ece']:.4f} on {ece['held_out']['on']}" if "held_out" in ece else "")),
        ("threshold", "model's own" if calibration.threshold is None
         else f"{calibration.threshold:.4f} ({calibration.threshold_rule})"),
    ]
    for point in calibration.operating_points:
        note = "" if point["resolved"] else " (too few different-person pairs to resolve)"
        rows.append((f"FMR {point['fmr']:g}", f"threshold {point['threshold']:.4f}, same-person pairs accepted "
                                              f"{point['tmr']:.2%}{note}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    genuine = calibration.genuine_scores
    if len(genuine):
        lo, hi = float(np.median(genuine)), float(np.median(calibration.impostor_scores))
        lines.append(f"{'score':>10}  {'P(same)':>8}  more similar than (share of different-person pairs)")
        for value in np.linspace(lo, hi, 7):
            lines.append(f"{value:>10.4f}  {calibration.probability(value):>8.1%}  "
                         f"{calibration.impostor_percentile(value):.2%}")
    return "\n".join(lines)
