"""`python -m cnn_core` / `cnn-explorer`: data sets, models, training, evaluation and prediction.

Every command prints one clear line and exits with status 2 on bad arguments, missing data or a bad
checkpoint; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import shlex
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CnnError, failure_line
from .reports import metric_text

if TYPE_CHECKING:  # pragma: no cover - the parser and --help import no torch
    from .data.augment import AugmentConfig
    from .training import TrainConfig


LOG_BAR_SECONDS = 30  # the progress bar's redraw interval where stderr is a log, not a terminal


def _percent(value: float | None) -> str:
    return metric_text("accuracy", value, decimals=2)


def _epoch_line(event) -> str:
    """One epoch of a run, as `train` prints it (locally and from a Ray cluster)."""
    return (f"epoch {event.epoch}: train loss {event.train_loss:.4f} acc {_percent(event.train_accuracy)} | "
            f"val loss {event.val_loss:.4f} acc {_percent(event.val_accuracy)} | {event.seconds:.1f} s")


def _count(n: int, noun: str) -> str:
    """"1 epoch", "2 epochs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_datasets(args: argparse.Namespace) -> int:
    from . import data

    rows = []
    for info in data.list_datasets():
        status = data.dataset_status(info.name)
        if not (args.all or status.available) and info.family == "medmnist" and info.image_size != 28:
            continue
        rows.append({"name": info.name, "title": info.title, "task": info.task, "classes": len(info.class_names),
                     "available": status.available, "location": str(status.location) if status.location else None,
                     "how_to_get": None if status.available else status.how_to_get})
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        where = f"found at {r['location']}" if r["available"] else "missing"
        print(f"{r['name']:<{width}}  {r['classes']:>3} classes  {r['task']:<26}  {where}")
    if not args.all:
        print("(MedMNIST sets also come at 64, 128 and 224 px: e.g. pathmnist_64; `datasets --all` lists them.)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models

    specs = list_models()
    if args.json:
        print(json.dumps([{"name": s.name, "title": s.title, "description": s.description} for s in specs]))
        return 0
    for spec in specs:
        print(f"{spec.name:<14} {spec.title}: {spec.description}")
    return 0


def _progress_bar(total: int | None, unit: str, *, disable: bool = False, **options):
    """The CLI's progress bar (tqdm on stderr), shared by training (steps) and downloads (bytes); in a log file a
    3-minute run writes a few redraws, not thousands."""
    from tqdm import tqdm

    if not sys.stderr.isatty():
        options.update(mininterval=LOG_BAR_SECONDS, maxinterval=LOG_BAR_SECONDS)  # tqdm's monitor: every 10 s
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=disable, **options)


def cmd_download(args: argparse.Namespace) -> int:
    from . import data

    bar = None

    def show_bytes(progress: data.DownloadProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress_bar(progress.total, "B", unit_scale=True, unit_divisor=1000, desc=progress.filename)
        if progress.total != bar.total:
            bar.total = progress.total
        if bar.desc != progress.filename:
            bar.set_description(progress.filename, refresh=False)
        bar.update(progress.done - bar.n)

    def say(line: str) -> None:
        if bar is not None:  # a line after the transfer (its summary): the bar is done
            bar.close()
        print(line, file=sys.stderr)

    try:
        path = data.download_dataset(args.name, progress=say, on_bytes=show_bytes)
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.name}: ready at {path}")
    return 0


def config_from_args(args: argparse.Namespace) -> "TrainConfig":
    """The TrainConfig of `train`'s arguments: what `cmd_train` runs, and what a recorded command gives back
    (the studio's card commands are tested to round-trip through this)."""
    from .training import TrainConfig

    return TrainConfig(
        dataset=args.data,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        label_smoothing=args.label_smoothing, ema_decay=args.ema_decay, class_weights=args.class_weights,
        patience=args.patience,
        monitor=args.monitor or "auto",
        seed=args.seed,
        device=args.device,
        limit=args.limit,
        augment=_augment(args),
        tta=args.tta,
        image_size=args.image_size,
        out=args.out,
        command=getattr(args, "command_line", ""),
        model_args=_model_args(args),
    )


def _augment(args: argparse.Namespace) -> "AugmentConfig | None":
    """None (what suits the data set) unless an augmentation flag is given; given flags replace the data set's
    defaults one by one."""
    given = {key: getattr(args, key) for key in ("shift", "hflip", "vflip", "color_jitter", "rotate90", "grayscale")}
    given = {key: value for key, value in given.items() if value is not None}
    if not given:
        return None
    from dataclasses import replace

    from . import data
    from .data.augment import default_augment

    info = data.get_dataset_info(args.data)
    return replace(default_augment(info.family, info.task, info.name), **given)


def cmd_train(args: argparse.Namespace) -> int:
    from .runs import RunStatus
    from .runs.worker import recorded
    from .training import BatchEvent, EndEvent, EpochEvent, StartEvent, StatusEvent, checkpoint_keeps, train

    config = config_from_args(args)
    if args.backend == "ray":
        if args.tensorboard:
            raise CnnError("--tensorboard writes the log on this machine: use it with --backend local.")
        return _train_on_ray(args, config)
    cancel = threading.Event()
    events = train(config, cancel=cancel)
    if args.tensorboard:  # before the run is recorded: a folder that cannot be written ends here, with one line
        from .training.tensorboard import tensorboard_logged

        events = tensorboard_logged(events, args.tensorboard)
    store, run_id = _record_cli_run(config)
    bar = None
    end = None
    quiet = args.json and not sys.stderr.isatty()
    if store is not None:
        events = recorded(store, run_id, config, events)
    try:
        for event in events:
            if isinstance(event, StartEvent):
                print(
                    f"Training {event.model} on {event.dataset} ({event.n_train} train / {event.n_val} val / "
                    f"{event.n_test} test images) on {event.device} for {_count(event.epochs, 'epoch')}",
                    file=sys.stderr,
                )
                if args.monitor is None and event.config["monitor"] != "val_accuracy":
                    print(f"The checkpoint keeps {checkpoint_keeps(event.config['monitor'])} (--monitor "
                          "val_accuracy keeps the epoch with the best validation accuracy).", file=sys.stderr)
                bar = _progress_bar(event.epochs * event.steps_per_epoch, "step", disable=quiet)
            elif isinstance(event, StatusEvent):
                (bar.write if bar is not None else print)(event.message, file=sys.stderr)
            elif isinstance(event, BatchEvent) and bar is not None:
                bar.set_postfix(epoch=event.epoch, loss=f"{event.loss:.3f}", lr=f"{event.lr:.2e}", refresh=False)
                bar.update(event.step - bar.n)  # redraws at most every mininterval
            elif isinstance(event, EpochEvent):
                (bar.write if bar is not None else print)(_epoch_line(event), file=sys.stderr)
            elif isinstance(event, EndEvent):
                end = event
    except KeyboardInterrupt:
        cancel.set()
        if store is not None:
            store.finish(run_id, RunStatus.INTERRUPTED, note="Interrupted from the keyboard.")
        raise
    except Exception as exc:
        if store is not None:
            message = str(exc) if isinstance(exc, CnnError) else f"Training failed unexpectedly: {type(exc).__name__}: {exc}"
            store.finish(run_id, RunStatus.FAILED, error=message)
        raise
    finally:
        if bar is not None:
            bar.close()
    if store is not None:
        store.finish(run_id, RunStatus.CANCELLED if end.cancelled else RunStatus.FINISHED)
    return _report(args, end)


def _report(args: argparse.Namespace, end) -> int:
    """The last lines of `train`: a summary on stderr, and with --json one line of metrics and timings."""
    metrics = end.test_metrics or {}
    print(
        f"Done in {end.seconds:.1f} s of training, {_count(end.epochs_run, 'epoch')} (best {end.best_epoch})"
        + (", stopped early" if end.stopped_early else "")
        + f". Test accuracy {_percent(metrics.get('accuracy'))}, ROC-AUC {_percent(metrics.get('auroc'))}"
        + (f" ({metrics['undefined']['auroc']})" if (metrics.get("undefined") or {}).get("auroc") else "") + "."
        + (f" Checkpoint: {end.checkpoint_path}" if end.checkpoint_path else
           " No checkpoint was saved: add --out FILE.safetensors to keep one."),
        file=sys.stderr,
    )
    if args.json:
        summary = {
            "test_metrics": _scalars(metrics),
            "train_seconds": round(end.seconds, 3),
            "epochs_run": end.epochs_run,
            "best_epoch": end.best_epoch,
            "checkpoint": end.checkpoint_path,
        }
        print(json.dumps(summary))
    return 0


def _train_on_ray(args: argparse.Namespace, config: "TrainConfig") -> int:
    """`train --backend ray`: the run goes to the cluster in CNN_RAY_ADDRESS as a Ray task, like a studio run
    there; this process prints its epochs as they arrive and ends like a local `train`."""
    import time

    from .runs import CLI_OWNER, RunManager, RunStatus
    from .runs.ray_backend import RayBackend, ray_address

    address = ray_address()
    if address is None:
        raise CnnError("--backend ray needs CNN_RAY_ADDRESS (auto, host:port or ray://host:10001).")
    manager = RunManager(max_concurrent=1, backend=RayBackend(address))
    run_id = manager.submit(CLI_OWNER, config, save=False, origin="cli")
    print(f"Training on the Ray cluster at {address} (run {run_id[:8]})", file=sys.stderr)
    printed = 0
    try:
        while True:
            snap = manager.snapshot(run_id)
            for event in snap.epochs[printed:]:
                print(_epoch_line(event), file=sys.stderr)
            printed = len(snap.epochs)
            if not snap.status.active:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        manager.cancel(run_id)  # the task keeps its best weights; wait for them to arrive
        print("Stopping the run on the cluster…", file=sys.stderr)
        manager.wait(run_id, timeout=60)
        raise
    if snap.status is RunStatus.FAILED:
        raise CnnError(snap.error or "the run failed")
    end = snap.end
    return _report(args, end) if end is not None else 2


def _record_cli_run(config: "TrainConfig"):
    """The run store and a new run in it, owned by "cli", for `train`: `runs list` shows CLI runs too."""
    import uuid

    from . import data
    from .runs import CLI_OWNER, RunStatus, RunStore
    from .training import resolve_config

    info = data.get_dataset_info(config.dataset)
    resolved = resolve_config(config, info)  # ConfigError before anything is recorded
    from .runs.worker import process_token

    run_id = uuid.uuid4().hex
    try:
        store = RunStore()
        store.create_run(run_id, CLI_OWNER, config, resolved, info.title, origin="cli", status=RunStatus.RUNNING,
                         holder=process_token())  # fmt: skip
    except (OSError, sqlite3.Error, CnnError) as exc:  # e.g. a read-only CNN_CACHE_DIR: train, unrecorded
        print(f"warning: this run is not recorded for `runs list` ({exc}).", file=sys.stderr)
        return None, run_id
    return store, run_id


def cmd_runs(args: argparse.Namespace) -> int:
    """`runs list`: every recorded run, the app's and the CLI's; `runs stop ID...`: stop queued or training runs."""
    from .runs import RunStore
    from .runs.admin import run_rows, run_table, stop_runs

    store = RunStore()
    if store.set_aside is not None:
        print(f"warning: the run database was damaged; it was moved to {store.set_aside} and a new one started.",
              file=sys.stderr)
    if args.action == "stop":
        if not args.ids:
            raise CnnError("Name the runs to stop: `runs stop ID...` (ids from `runs list`), or `runs stop active`.")
        stopped = stop_runs(args.ids, store)
        said = (f"Asked {len(stopped)} run(s) to stop: each keeps its best weights so far; a queued one leaves the "
                "queue." if stopped else "No run is queued or training.")
        print(json.dumps(stopped) if args.json else said)
        return 0
    rows = run_rows(store)
    print(json.dumps(rows) if args.json else run_table(rows) if rows else
          "No runs recorded yet: `python -m cnn_core train --data mnist` records one.")
    return 0


def _model_args(args: argparse.Namespace) -> dict:
    model_args = {}
    for item in args.model_arg or []:
        key, _, value = item.partition("=")
        if not key or not value:
            raise CnnError(f"--model-arg takes KEY=VALUE; got {item!r}.")
        try:
            model_args[key] = json.loads(value)
        except json.JSONDecodeError:
            model_args[key] = value
    if getattr(args, "mode", None):
        if not (args.model or "").startswith("transfer:"):
            raise CnnError(f"--mode applies to transfer models (--model transfer:efficientnet_lite0, ...), not {args.model!r}.")
        model_args["mode"] = args.mode
    return model_args


def _scalars(metrics: dict) -> dict:
    """The numbers (None: undefined) and, under "undefined", why each undefined one is."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None or k == "undefined"}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import data
    from .inference.metrics import classification_metrics
    from .inference.predict import predict_tensor
    from .models import card as card_module
    from .models.checkpoints import load_checkpoint

    # a folder is named by its path or by its registry name (the folder's own name): both mean the card's set
    expected = data.get_dataset_info(args.data).name if args.data and not args.images else args.data
    loaded = load_checkpoint(args.checkpoint, expect_dataset=expected)
    card = loaded.card
    if args.images:  # labelled image files, prepared as `predict` prepares them
        from .inference.answers import evaluate_files, files_note, refused_lines
        metrics, where = evaluate_files(loaded, args.images, raw=args.raw), {"images": args.images}
    else:
        source = args.data or card.data_source()
        split, where = data.load_split(source, args.split, image_size=card.image_size), {"split": args.split}
        card.check_classes(split.info.class_names, f"The data set {source}")
        if split.images.shape[1] != card.channels or split.images.shape[-1] != card.image_size:
            raise CnnError(f"The {args.split} images are {tuple(split.images.shape[1:])} but the checkpoint "
                           f"expects {card.channels}x{card.image_size}x{card.image_size}.")
        metrics = classification_metrics(predict_tensor(loaded, split.images), split.labels, card.n_classes,
                                         card.class_names)
    if args.json:
        print(json.dumps({"dataset": card.dataset, **where, **metrics}))
        return 0
    refused = files_note(metrics) if args.images else ""
    print(f"{Path(args.checkpoint).name} on {args.images or f'{card.dataset} {args.split}'} ({metrics['n']} images{refused}):")
    keys = [k for k in card_module.METRIC_ROWS if k in metrics]
    width = max((len(card_module.metric_label(key, metrics)) for key in keys), default=17)
    for key in keys:  # as `train` and the studio show them: percentages, kappa a number
        why, label = metrics.get("undefined", {}).get(key), card_module.metric_label(key, metrics)
        print(f"  {label:<{width}} {metric_text(key, metrics[key], decimals=2)}" + (f" ({why})" if why else ""))
    for line in refused_lines(metrics) if args.images else []:
        print(line, file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference.answers import answer_files, answer_line
    from .models.checkpoints import load_checkpoint

    answers = answer_files(load_checkpoint(args.checkpoint), args.images, raw=args.raw)
    for answer in answers:
        print(json.dumps(answer) if args.json else answer_line(answer),
              file=sys.stderr if "error" in answer and not args.json else sys.stdout)
    return 2 if any("error" in answer for answer in answers) else 0


def cmd_export(args: argparse.Namespace) -> int:
    """`export --format onnx`: the checkpoint's network with its input preparation, and a JSON card beside it."""
    from .inference.export import export_checkpoint

    out, card = export_checkpoint(args.checkpoint, args.out, args.format, args.input_dtype)
    print(f"Wrote {out} ({out.stat().st_size / 1024**2:.1f} MB) and its input card {card.name}.", file=sys.stderr)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """`summary`: torchinfo's table of a registry model (--model with --data) or of a checkpoint's model."""
    from .inference import graph

    if bool(args.checkpoint) == bool(args.model or args.data) or bool(args.model) != bool(args.data):
        raise CnnError("summary takes --checkpoint PATH, or --model NAME with --data NAME (the input's shape).")
    summary = (graph.summarize_checkpoint(args.checkpoint) if args.checkpoint
               else graph.summarize_registry_model(args.model, args.data, _model_args(args)))  # fmt: skip
    print(json.dumps(graph.summary_dict(summary)) if args.json else graph.summary_text(summary))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse that ends with one clear line (and status 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _command(sub, func, *args, json_help: str | None = None, **options) -> argparse.ArgumentParser:
    """A sub-command's parser that runs `func`, with a --json flag where `json_help` says what it prints."""
    p = sub.add_parser(*args, **options)
    p.set_defaults(func=func)
    if json_help:
        p.add_argument("--json", action="store_true", help=json_help)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cnn-explorer",
        description="CNN Explorer: image classification with convolutional neural networks.",
        epilog="Data is read from $CNN_DATA_DIR and caches go to $CNN_CACHE_DIR.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = _command(sub, cmd_datasets, "datasets", json_help="print JSON",
                 help="list every data set and whether it is found")
    p.add_argument("--all", action="store_true", help="include MedMNIST at 64, 128 and 224 px")

    p = _command(sub, cmd_models, "models", json_help="print JSON", help="list the model registry")

    p = _command(
        sub, cmd_download, "download",
        help="download a data set into $CNN_CACHE_DIR (needs the internet)",
        description="Download MNIST or a MedMNIST set into $CNN_CACHE_DIR, with a progress bar. The files come "
        "from zenodo.org / torchvision's MNIST servers, or from $CNN_DOWNLOAD_MIRROR when it is set (a classroom "
        "server holding pathmnist.npz, train-images-idx3-ubyte.gz, ...).",
    )
    p.add_argument("name", help="data set name, e.g. mnist or pathmnist")

    p = _command(
        sub, cmd_train, "train",
        help="train a model and save a checkpoint",
        description="Train a model; with no --model, the best default for the data set. Transfer learning from an "
        "ImageNet backbone: --model transfer:efficientnet_lite0 (works offline; also transfer:resnet18, vgg11, vgg16, "
        "densenet121, mobilenet_v3_large, mobilenet_v3_small when their torchvision weights are cached or "
        "downloadable) with --mode frozen|finetune|full, e.g. "
        "`train --data brain_mri --model transfer:efficientnet_lite0 --mode finetune`.",
    )
    p.add_argument("--data", required=True, help="data set name (see `datasets`) or an image folder path")
    p.add_argument("--model", help="model name (see `models`); default: the best for the data set")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="extra model option, repeatable")
    p.add_argument(
        "--mode",
        choices=["frozen", "finetune", "full"],
        help="transfer models (--model transfer:<backbone>): frozen = feature extraction, the backbone stays fixed "
        "and only a new head trains (default); finetune = the last blocks train too (--model-arg finetune_blocks=N, "
        "at a tenth of the head's learning rate: --model-arg backbone_lr=0.1); full = everything trains. "
        "Same as --model-arg mode=...",
    )
    p.add_argument("--epochs", type=int, help="epochs (default: the model's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the model's)")
    p.add_argument("--lr", type=float, help="learning rate (peak rate for one-cycle)")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd", "rmsprop"], help="optimizer")
    p.add_argument("--schedule", choices=["none", "onecycle", "cosine"], help="learning-rate schedule")
    # defaults as in TrainConfig (the parser imports no torch; the card-command round-trip test checks them)
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum of sgd and rmsprop (default 0.9)")
    p.add_argument("--label-smoothing", type=float, help="label smoothing (default: 0.1 for MedMNIST sets trained from "
                   "scratch with two classes or 5,000+ training images, else 0)")
    p.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights, updated every "
                   "step with this decay, and validate, test and save it (0: off, the default)")
    p.add_argument("--class-weights", choices=["auto", "balanced", "sqrt", "none"], default="auto",
                   help="loss weights per class; auto (default): square-root weights for two classes of which "
                   "the larger has 2x the images or more, else none")
    p.add_argument("--patience", type=int, help="stop after this many epochs without validation improvement")
    p.add_argument(
        "--monitor",
        choices=["auto", "val_accuracy", "val_balanced_accuracy", "val_auroc", "val_loss", "last"],
        help="which epoch's weights to keep: the best by a validation figure, or the last (for validation sets of "
        "a few dozen images, whose scores are mostly noise). auto (default): the last for transfer models (without "
        "--patience), balanced accuracy for two classes, accuracy for more",
    )
    augment = p.add_argument_group(
        "augmentation", "random changes to the training images; each flag replaces that part of the data set's default "
        "(digits: shifts; MedMNIST: shifts, flips, 90° rotations, colour jitter and gray copies (probability 0.25); "
        "image folders: shifts, horizontal flips and jitter)")
    augment.add_argument("--shift", type=int, metavar="PIXELS", help="random shift of up to this many pixels (0: off)")
    augment.add_argument("--hflip", action=argparse.BooleanOptionalAction, help="random horizontal flips")
    augment.add_argument("--vflip", action=argparse.BooleanOptionalAction, help="random vertical flips")
    augment.add_argument("--color-jitter", type=float, metavar="STRENGTH",
                         help="colour jitter (contrast, per-channel gain, brightness) from 0 (off) to 0.5")
    augment.add_argument("--rotate90", action=argparse.BooleanOptionalAction,
                         help="random 90° rotations (transposes; with flips, all 8 orientations)")
    augment.add_argument("--grayscale", type=float, metavar="PROBABILITY",
                         help="probability that a colour training image is shown in gray (0: off)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="test-time augmentation: test metrics and predictions average the orientations the "
                   "augmentation used (flips, 90° rotations); --no-tta for one view (default: on)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the fastest found; $CNN_DEVICE)")
    p.add_argument("--limit", type=int, help="use at most N images per split (quick runs)")
    p.add_argument("--image-size", type=int, help="image folders: side to resize to (default 128; transfer models: the backbone's input size, 224)")
    p.add_argument("--out", help="checkpoint path (.safetensors); a .json card is written beside it")
    p.add_argument("--json", action="store_true", help="end with one JSON line of test metrics and timings")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="write a TensorBoard log into DIR (loss, accuracy and learning rate per step and epoch, the "
                   "model graph, the confusion matrix, misclassified images, options and final metrics); "
                   "watch it with `tensorboard --logdir DIR`")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: train in this process (default); ray: send the run to the Ray cluster named by "
                   "$CNN_RAY_ADDRESS (auto, host:port or ray://host:10001; pip install -e '.[cluster]')")

    p = _command(sub, cmd_runs, "runs", json_help="print JSON",
                 help="the recorded training runs (the app's and the command line's)")
    p.add_argument("action", choices=["list", "stop"], help="list: one line per run; stop: stop the runs named")
    p.add_argument("ids", nargs="*", metavar="ID", help="stop: run ids (or their first characters, as listed), or "
                   "'active' for every queued and training run")

    p = _command(sub, cmd_evaluate, "evaluate", json_help="print JSON", help="metrics of a checkpoint on a split")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.safetensors)")
    p.add_argument("--data", help="data set it must have been trained on (default: the card's)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default test)")
    p.add_argument("--images", metavar="FOLDER", help="image files in class folders named by class or number (FOLDER/cat/*.png, FOLDER/7/*.png), or "
                   "labelled by a CSV table or their names (cat.1.png), prepared as `predict` prepares them, instead of a split")
    p.add_argument("--raw", action="store_true", help="with --images: digit models only resize, as `predict --raw`")

    p = _command(sub, cmd_predict, "predict", json_help="one JSON line per image (with a trust field)",
                 help="class and probabilities for image files")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.safetensors)")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, TIFF, ...)")
    p.add_argument("--raw", action="store_true", help="digit models: only resize, do not find, crop and centre "
                   "the digit the MNIST way")

    p = _command(
        sub, cmd_export, "export", help="export a checkpoint to ONNX (for onnxruntime, Netron, ...)", description="Export a checkpoint as an ONNX graph that includes its input preparation (scaling, "
        "normalisation, test-time augmentation) and outputs class probabilities; a batch of any size. A JSON card "
        "beside it (FILE.onnx.json) names the input, its shape, type and value range, and the class names.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.safetensors)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (default onnx)")
    p.add_argument("--out", required=True, help="output file (.onnx)")
    p.add_argument("--input-dtype", default="uint8", choices=["uint8", "float32"],
                   help="the graph's input: uint8 pixels 0-255 (default) or float32 0-1")

    p = _command(sub, cmd_summary, "summary", json_help="print JSON",
                 help="layer table of a model (torchinfo): output shapes, parameters, mult-adds")
    p.add_argument("--model", help="registry model name (with --data)")
    p.add_argument("--data", help="data set that gives the input shape and the classes (with --model)")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="extra model option, repeatable")
    p.add_argument("--checkpoint", help="a checkpoint file instead of --model and --data")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m cnn_core " + shlex.join(argv)
    try:
        return args.func(args)
    except (CnnError, sqlite3.Error, MemoryError, RuntimeError) as exc:
        if (line := failure_line(exc)) is None:  # a bug: its traceback
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
