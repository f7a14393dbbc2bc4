"""`transferkit` command line: each subcommand is a thin call into the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import shlex
import sys
from pathlib import Path

import yaml

from transferkit import __version__
from transferkit.api import (compare, completed_config, export, fit, load_run, rank, report, resume,
                             tune)
from transferkit.backbones import BACKBONES, create_backbone, list_backbones
from transferkit.config import RunConfig, atomic_write_text
from transferkit.data.tables import TABLE_READERS
from transferkit.errors import WRITE_ERRNOS, TransferkitError, WriteError, io_error, os_error_in
from transferkit.strategies import STRATEGIES, list_strategies, strategy_options

#: RunConfig's defaults, shown in `--help` (the flags themselves default to None: unset keeps a --config file's value).
_RUN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}

class _Skipping:
    """Adds arguments to `parser` except the flags in `skip` (compare replaces some fit flags with lists)."""

    def __init__(self, parser: argparse.ArgumentParser, skip: tuple[str, ...]):
        self.parser, self.skip = parser, skip

    def add_argument(self, *flags, **kwargs):
        if flags[0] not in self.skip:
            self.parser.add_argument(*flags, **kwargs)


class _HelpFormatter(argparse.HelpFormatter):
    """Adds each option's default to its help (unless the help already says it, or there is none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {default})" if text else f"default: {default}"


class _RunOptions:
    """Adds fit's run options, each help ending with RunConfig's default (the flag itself defaults to None)."""

    def __init__(self, parser):
        self.parser = parser

    def add_argument(self, *flags, help: str = "", **kwargs):
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        default = _RUN_DEFAULTS.get(dest)
        if default not in (None, False) and "default" not in help and not isinstance(default, dict):
            help = f"{help} (default: {default})" if help else f"default: {default}"
        self.parser.add_argument(*flags, help=help, **kwargs)


def _add_fit_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    p = _RunOptions(_Skipping(p, skip) if skip else p)
    p.add_argument("--config", help="YAML file of options; flags given here override it")
    p.add_argument("--data", help="image folder, .csv/.jsonl/.parquet table, or demo:mnist|digits|rotten-tomatoes")
    p.add_argument("--model", help="backbone name (see `transferkit models`), timm:<arch> or hf:<id-or-folder>")
    p.add_argument("--strategy", help=f"transfer strategy, one of: {', '.join(STRATEGIES.names())}")
    p.add_argument("--weights", help="local weights file (timm) replacing the default source")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--task", choices=["classification", "regression"], help="what the labels are")
    p.add_argument("--test-data", help="separate labeled test set (same kinds as --data)")
    p.add_argument("--target-data", help="unlabeled data of the domain to adapt to (same kinds as --data; labels "
                   "ignored): dann, coral and mmd train on it; every run reports the domain gap to it")
    p.add_argument("--text-column", help="table column holding the texts")
    p.add_argument("--image-column", help="table column holding the image paths")
    p.add_argument("--label-column", help="table column holding the labels")
    p.add_argument("--val-fraction", type=float, help="share of the data held out for validation")
    p.add_argument("--test-fraction", type=float, help="share of the data held out for testing")
    p.add_argument("--train-per-class", type=int, help="keep N training samples per class (scarce labels)")
    p.add_argument("--skip-bad-files", action="store_true", default=None, help="skip unreadable images with a warning")
    p.add_argument("--image-size", type=int, help="input resolution (default: the backbone's pretrained size)")
    p.add_argument("--max-length", type=int, help="max text tokens (default: the backbone's)")
    p.add_argument("--augment", choices=["none", "light", "standard"], help="training-image augmentation")
    p.add_argument("--epochs", type=int, help="training epochs (default: the strategy's)")
    p.add_argument("--batch-size", type=int, help="samples per batch and process")
    p.add_argument("--lr", type=float, help="base (head) learning rate; groups scale it (default: the strategy's)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    p.add_argument("--seed", type=int, help="seed of the splits, initialisation and shuffling")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--precision", choices=["32", "bf16"], help="numeric precision of training and features")
    p.add_argument("--num-workers", type=int, help="data-loading worker processes")
    p.add_argument("--head", help="one of: linear, mlp, logistic, ridge (scikit-learn heads: feature-extraction "
                   "only; default: the strategy's)")
    p.add_argument("--tracker", help="experiment tracker besides the CSV log, one of: csv, tensorboard, mlflow")
    p.add_argument("--tracking-uri", help="MLflow store URI (default: sqlite:///<output root>/mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment name (default: transferkit; compare: its folder name)")
    p.add_argument("--feature-cache", help="folder of cached frozen-backbone features (compare: <out>/feature-cache)")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], help="where to train (default: auto)")
    p.add_argument("--devices", type=int, help="processes per node; more than one trains with DDP (default: 1)")
    p.add_argument("--num-nodes", type=int, help="machines training together with DDP (default: 1)")
    _add_strategy_options(p)


def _add_strategy_options(p) -> None:
    """One flag per option of the registered strategies, from their config fields' metadata (`option`)."""
    for opt in strategy_options():
        kwargs = ({"action": argparse.BooleanOptionalAction} if opt.kind is bool else {"type": opt.kind})
        p.add_argument(opt.flag, dest=f"opt_{opt.name}", metavar=opt.flag.lstrip("-").upper().replace("-", "_"),
                       help=_strategy_help(opt), **kwargs)


def _strategy_help(opt) -> str:
    """E.g. "adapter rank; >= 1; lora (default: 8)" or, when shared, every strategy's default."""
    values = {}
    for strategy, default in opt.defaults.items():
        values.setdefault(default, []).append(strategy)
    if len(values) == 1:
        (default, names), = values.items()
        where = f"{', '.join(names)} (default: {'unset' if default is None else default})"
    else:
        where = "default: " + "; ".join(f"{'unset' if d is None else d} ({', '.join(n)})" for d, n in values.items())
    return "; ".join(t for t in (opt.help, opt.valid, where) if t).replace("%", "%%")


def _add_rank_parser(sub) -> None:
    rk = sub.add_parser("rank", help="score backbones on your data from frozen features (LogME, H-score, LEEP, NCE)")
    rk.add_argument("--data", required=True, help="what fit takes as --data")
    rk.add_argument("--models", required=True, help="comma-separated backbones; <name>@random is a random init")
    rk.add_argument("--scores", help="comma-separated scores (default: logme,hscore,leep,nce)")
    rk.add_argument("--sort-by", default="logme", help="score to sort by (default: logme)")
    rk.add_argument("--control", choices=["random"], help="add a randomly initialised copy of the first model")
    rk.add_argument("--validate", action="store_true", help="fine-tune each briefly; Kendall's tau per score")
    rk.add_argument("--validate-strategy", default="full", help="strategy of those fine-tunings (default: full)")
    rk.add_argument("--validate-epochs", type=int, default=3, help="their epochs (default: 3)")
    rk.add_argument("--out", default="runs/rank", help="folder for ranking.csv and the validation runs")
    for flag in ("--text-column", "--image-column", "--label-column", "--test-data", "--feature-cache"):
        rk.add_argument(flag, help=f"as fit's {flag}")
    for flag in ("--train-per-class", "--image-size", "--max-length", "--seed", "--batch-size"):
        rk.add_argument(flag, type=int, help=f"as fit's {flag}")
    for flag in ("--val-fraction", "--test-fraction"):
        rk.add_argument(flag, type=float, help=f"as fit's {flag}")
    rk.add_argument("--precision", choices=["32", "bf16"], help="as fit's --precision")


def _add_evaluate_parser(sub) -> None:
    ev = sub.add_parser("evaluate", help="per-class and overall metrics of a run's model on labeled data")
    ev.add_argument("run", help="run folder")
    ev.add_argument("--data", required=True, help="labeled data (what fit takes as --data)")
    ev.add_argument("--out", help="also write the metrics as JSON to this file")
    _add_column_flags(ev, ("text", "image", "label"))


def _add_predict_parser(sub) -> None:
    pr = sub.add_parser("predict", help="predict images or texts with a run's model")
    pr.add_argument("run", help="run folder")
    pr.add_argument("inputs", nargs="+", help="image files, texts, or one table file or image folder")
    pr.add_argument("--out", help="write predictions to this CSV (default: print)")
    _add_column_flags(pr, ("text", "image"))


def _add_column_flags(parser, kinds: tuple[str, ...]) -> None:
    """The table-column flags the data layer's messages name (default: the run's own, from fit)."""
    for kind in kinds:
        parser.add_argument(f"--{kind}-column", help=f"table column holding the {kind}s (default: the run's)")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="leave unreadable image files out, naming each in a warning, instead of failing")


def _add_export_parser(sub) -> None:
    ex = sub.add_parser("export", help="export a run's model (ONNX), checked against PyTorch; writes RUN/export/")
    ex.add_argument("run", help="run folder")
    ex.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    ex.add_argument("--tolerance", type=float, default=1e-4,
                    help="largest output difference from PyTorch accepted (default: 1e-4)")
    ex.add_argument("--input-dtype", default="float32", choices=["float32", "uint8"],
                    help="images: float32 pixels in 0..1 or uint8 pixels in 0..255 (default: float32)")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")


def _add_tune_parser(sub) -> None:
    tn = sub.add_parser("tune", help="search lr, strategy and its options with Optuna; resumable (OUT/study.db)")
    _add_fit_options(tn, skip=("--strategy", "--resume", "--lr", "--out"))
    tn.add_argument("--out", required=True, help="tune folder: study.db, trials/, trials.csv")
    tn.add_argument("--trials", type=int, default=20, help="trials the study holds when done (default: 20)")
    tn.add_argument("--strategies", default="full,l2sp,gradual", help="strategies to choose from (comma-separated)")
    tn.add_argument("--lr-range", default="1e-5,1e-2", help="learning-rate range, log-uniform (default: 1e-5,1e-2)")
    tn.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    tn.add_argument("--study-name", help="study name in the storage (default: the --out folder's name)")
    tn.add_argument("--timeout", type=float, help="start no new trial after this many seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferkit", description="Adapt a pretrained network to your data.",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parser_class = sub._parser_class
    sub._parser_class = lambda *a, **k: parser_class(*a, formatter_class=_HelpFormatter, **k)  # defaults in --help
    fit = sub.add_parser("fit", help="adapt a backbone to labeled data; writes a run folder")
    _add_fit_options(fit)
    fit.add_argument("--print-config", action="store_true",
                     help="print the resolved config as YAML (what the run folder would save) and exit")
    _add_evaluate_parser(sub)
    _add_predict_parser(sub)
    sub.add_parser("models", help="backbones and whether their weights are here")
    ins = sub.add_parser("inspect", help="layer groups, parameters and preprocessing of a backbone")
    ins.add_argument("model", help="backbone name")
    ins.add_argument("--weights", help="local weights file (timm)")
    sub.add_parser("strategies", help="each strategy with when to use it")
    qs = sub.add_parser("quickstart", help="EfficientNet-Lite0 on MNIST: feature extraction vs full vs scratch")
    qs.add_argument("--out", default="runs/quickstart", help="folder of the three runs")
    qs.add_argument("--train-per-class", type=int, default=50, help="training labels per class")
    qs.add_argument("--image-size", type=int, default=64, help="input resolution")
    cmp = sub.add_parser("compare", help="fit strategies x labels per class x seeds; comparison.csv and a report")
    _add_fit_options(cmp, skip=("--strategy", "--train-per-class", "--seed", "--resume"))
    cmp.add_argument("--strategies", required=True, help="comma-separated, e.g. feature-extraction,full,scratch")
    cmp.add_argument("--train-per-class", help="comma-separated labels per class and/or all, e.g. 10,50,all")
    cmp.add_argument("--seeds", default="3", help="number of seeds (3: seeds 0, 1, 2) or a list (0,5,7)")
    rep = sub.add_parser("report", help="rebuild comparison.csv, report.md and report.html of a compare folder")
    rep.add_argument("folder", help="comparison folder")
    _add_rank_parser(sub)
    _add_export_parser(sub)
    _add_tune_parser(sub)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def _fit_options(args, exclude: tuple[str, ...]) -> dict:
    """The run and strategy options given on the command line (strategy flags carry an `opt_` prefix)."""
    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "debug", "config", *exclude) and not k.startswith("opt_")}
    options.update({k[4:]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None})
    return options


def cmd_fit(args) -> None:

    if args.print_config:
        config = completed_config(args.config, **_fit_options(args, ("resume", "print_config")))
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return
    if args.resume and args.out and not args.config:  # the saved config, any flag given checked against it
        resume(args.out, **_fit_options(args, ("resume", "print_config", "out")))
        return
    fit(args.config, resume=args.resume, **_fit_options(args, ("resume", "print_config")))


def cmd_evaluate(args) -> None:
    evaluation = load_run(args.run).evaluation(args.data, skip_bad_files=args.skip_bad_files or None,
                                               **_column_options(args, ("text", "image", "label")))
    evaluation.print_table()
    if args.out:
        atomic_write_text(args.out, json.dumps(evaluation.to_dict(), indent=2))
        print(f"Wrote {args.out}")


def _column_options(args, kinds: tuple[str, ...]) -> dict:
    return {f"{kind}_column": getattr(args, f"{kind}_column") for kind in kinds
            if getattr(args, f"{kind}_column", None) is not None}


def cmd_predict(args) -> None:
    import pandas as pd  # deferred: pandas is slow to import

    run = load_run(args.run)
    single = args.inputs[0] if len(args.inputs) == 1 else None
    # One existing folder or table file is read as a source; anything else is a list of inputs.
    source = single is not None and (Path(single).is_dir() or Path(single).suffix.lower() in TABLE_READERS)
    frame = pd.DataFrame(run.predict(single if source else list(args.inputs),
                                     skip_bad_files=args.skip_bad_files, **_column_options(args, ("text", "image"))))
    if args.out:
        atomic_write_text(args.out, frame.to_csv(index=False))
        print(f"Wrote {len(frame)} predictions to {args.out}")
    else:
        print(frame[[c for c in frame.columns if not c.startswith("p_")]].to_string(index=False))


def cmd_models(args) -> None:

    print(f"{'name':22} {'modality':9} {'here':5} weights")
    for row in list_backbones():
        print(f"{row['name']:22} {row['modality']:9} {'yes' if row['available'] else 'no':5} {row['weights']}")
    print(f"Also: {', '.join(p + ':<name>' for p in BACKBONES.prefixes())} (timm or transformers models; "
          "--weights FILE or a local folder when offline).")


def cmd_inspect(args) -> None:

    info = create_backbone(args.model, weights=args.weights).describe()
    print(f"{info['name']}: {info['num_features']} features, {info['total_params']:,} parameters")
    print("layer groups (input -> output):")
    for i, g in enumerate(info["layer_groups"]):
        print(f"  {i:2d} {g['name']:14} {g['params']:>12,}")
    print("preprocessing:", ", ".join(f"{k}={v}" for k, v in info["data_spec"].items() if v is not None))


def cmd_strategies(args) -> None:

    for row in list_strategies():
        print(f"{row['name']:19} {row['when_to_use']}")


def cmd_quickstart(args) -> None:
    from transferkit.workflows.quickstart import quickstart  # deferred: the engine imports lightning

    quickstart(out=args.out, train_per_class=args.train_per_class, image_size=args.image_size)


def cmd_compare(args) -> None:

    axes = ("strategies", "train_per_class", "seeds")
    compare(args.config, **{k: getattr(args, k) for k in axes}, **_fit_options(args, axes))


def cmd_report(args) -> None:

    result = report(args.folder)
    print(f"Wrote {result.report_html}, {result.report_md} and comparison.csv ({len(result.table)} cells).")


def cmd_rank(args) -> None:

    settings = ("command", "debug", "data", "models", "scores", "sort_by", "control", "validate",
                "validate_strategy", "validate_epochs", "out")
    options = {k: v for k, v in vars(args).items() if k not in settings and v is not None}
    ranking = rank(args.data, args.models, scores=args.scores, sort_by=args.sort_by, control=bool(args.control),
                   validate=args.validate, validate_strategy=args.validate_strategy,
                   validate_epochs=args.validate_epochs, out=args.out, **options)
    print(f"Wrote {ranking.folder / 'ranking.csv'}")


def cmd_export(args) -> None:

    result = export(args.run, format=args.format, tolerance=args.tolerance, input_dtype=args.input_dtype,
                    opset=args.opset)
    print(f"Wrote {result.model_path} (inputs: {', '.join(result.inputs)}); ONNX Runtime matches PyTorch "
          f"within {result.max_abs_diff:.2g} (tolerance {result.tolerance:g}).")


def cmd_tune(args) -> None:

    options = _fit_options(args, ("out", "trials", "strategies"))
    result = tune(args.config, out=args.out, trials=args.trials, strategies=args.strategies,
                  **{k: v for k, v in options.items() if v is not None})
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    print(f"Best val score {result.best_value:.4f} ({params}): {result.best_run}")
    print(f"All trials: {result.folder / 'trials.csv'}; study {result.study_name!r} in {result.storage}")


COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "predict": cmd_predict, "models": cmd_models,
            "inspect": cmd_inspect, "strategies": cmd_strategies, "quickstart": cmd_quickstart,
            "compare": cmd_compare, "report": cmd_report, "rank": cmd_rank,
            "export": cmd_export, "tune": cmd_tune}


def main(argv: list[str] | None = None) -> int:
    """The one error boundary: a TransferkitError is one line and exit 2, Ctrl-C exit 130 with how to continue,
    anything else exit 1 with one line (`--debug` shows the traceback instead).

    A full disk or a read-only or forbidden target that a library reports in its own way (an OSError, a
    RuntimeError of torch.save, a SafetensorError) is bad environment, not a bug: one line and exit 2.
    """
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    debug, args = "--debug" in argv, None
    try:
        args = build_parser().parse_args(argv)  # inside the boundary: --help into a closed pipe ends cleanly too
        logging.basicConfig(level=logging.WARNING, format="transferkit: %(levelname)s: %(message)s")
        COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the boundary: a closed pipe surfaces here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()  # the reader (e.g. `| head`) has what it wanted
        return 0
    except KeyboardInterrupt:
        print(f"transferkit: interrupted; {_how_to_continue(args, argv)}", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        error = exc if isinstance(exc, TransferkitError) else _refused_write(exc, args)
        if error is not None:
            print(f"transferkit: error: {_one_line(error)}", file=sys.stderr)
            return error.exit_code
        # a bug, not bad input: say so in one line
        print(f"transferkit: internal error: {type(exc).__name__}: {_one_line(exc)}; rerun with --debug and "
              "report it", file=sys.stderr)
        return 1
    return 0


def _refused_write(exc: Exception, args) -> TransferkitError | None:
    """The one-line error for a full disk, or a read-only or forbidden file, somewhere under `exc`; else None.

    The file is the one the OSError names, else the folder the command writes into. A permission error
    may come from a read as well as a write, so its message names neither.
    """
    cause = os_error_in(exc)
    if cause is None or cause.errno not in WRITE_ERRNOS:
        return None
    target = cause.filename or next((v for k in ("out", "run", "folder") if (v := getattr(args, k, None))), None)
    fix = "choose another --out" if getattr(args, "out", None) else "move it to a disk with room"
    if cause.errno in (errno.EACCES, errno.EPERM):
        return TransferkitError(f"{cause.strerror}: {target or 'a file'}; make it accessible to you"
                                f"{' or choose another --out' if getattr(args, 'out', None) else ''}.")
    if target is None:
        return WriteError(f"{cause.strerror} while writing; free space or {fix}.")
    return io_error(cause, target, fix)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in tests)
        pass


def _how_to_continue(args, argv: list[str]) -> str:
    """What to do after Ctrl-C: fit resumes its --out; compare, tune, rank --validate and quickstart re-run (and
    keep what finished); export and every other command is simply run again."""
    if args is None:
        return "nothing to continue; run the command again"
    again = shlex.join(["transferkit", *(a for a in argv if a != "--debug")])
    if args.command == "fit":
        return f"continue with: transferkit fit --out {shlex.quote(str(args.out)) if args.out else 'DIR'} --resume"
    if args.command in ("compare", "tune", "quickstart") or getattr(args, "validate", False):
        kept = {"compare": "finished cells are kept", "tune": "finished trials are kept"}.get(args.command,
                                                                                               "finished runs are kept")
        return f"continue with: {again} (the same command resumes; {kept})"
    if args.command == "export":
        return f"run the export again: {again} (the previous export, if any, is as it was)"
    return f"run it again: {again}"


if __name__ == "__main__":
    sys.exit(main())
