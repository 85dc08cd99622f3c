"""A run's options: `TrainConfig` as the user gives them, `ResolvedConfig` with the model's defaults filled
in, and the checks that refuse options out of range before anything loads (`ConfigError`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..data.augment import AugmentConfig, default_augment
from ..data.types import DatasetInfo
from ..errors import CnnError, ConfigError
from ..models import default_model_for, get_model_spec
from ..models.transfer import is_transfer_model

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "onecycle", "cosine")
#: Which epoch the checkpoint keeps. "auto" picks per data set (`resolve_monitor`); "last" keeps the final epoch
#: (validation sets of a few dozen images); the others keep the best epoch by that validation figure.
MONITORS = ("auto", "val_accuracy", "val_balanced_accuracy", "val_auroc", "val_loss", "last")
#: The validation figure each best-epoch monitor maximises (minimises for the loss), in words.
MONITOR_FIGURES = {
    "val_accuracy": "the best validation accuracy",
    "val_balanced_accuracy": "the best validation balanced accuracy",
    "val_auroc": "the best validation ROC-AUC",
    "val_loss": "the lowest validation loss",
}
CLASS_WEIGHTS = ("auto", "balanced", "sqrt", "none")
#: "auto" class weights (two classes only) turn on from this largest/smallest training-class ratio (`_class_weights`).
WEIGHTED_FROM_RATIO = 2.0
#: The default recipe of a training set under SMALL_SET_IMAGES images (larger sets, MNIST and PathMNIST, keep the
#: model's epochs and batch): at least MIN_DEFAULT_STEPS optimizer steps (24 epochs of 546 images in batches of 128
#: were 100 steps, too few to learn), within PASS_BUDGET_28PX image passes at 28 x 28 pixels, scaled by pixel count
#: for larger images, so any such set trains in well under a minute on a 2-core laptop CPU (measured: brain MRI,
#: 202 images at 128 px, 36 epochs in batches of 16: 18 s; 300 epochs of batches of 128 had taken 124 s).
MIN_DEFAULT_STEPS = 1200
PASS_BUDGET_28PX = MIN_DEFAULT_STEPS * 128
MAX_AUTO_EPOCHS = 300
SMALL_SET_IMAGES = 5000
#: Sets of SMALL_SET_IMAGES or more grow from the model's epochs towards its "max_epochs" as long as the run stays
#: within this many image passes at 28 x 28 pixels (scaled by pixel count): PathMNIST's 24 epochs of 89,996 images,
#: 19-27 s an epoch on the 2-core development machine depending on the hour, 8-11 minutes (`default_recipe`).
LARGE_PASS_BUDGET_28PX = 24 * 90_000
#: Label smoothing of MedMNIST runs trained from scratch (`default_label_smoothing`).
MEDMNIST_LABEL_SMOOTHING = 0.1
#: Smallest batch the default recipe picks to fit its steps into the pass budget (BatchNorm statistics of
#: fewer images are noisy).
MIN_AUTO_BATCH = 16
#: Smallest side `default_image_size` halves a small set's images to (MedMNIST's own smallest size).
MIN_DEFAULT_SIDE = 28

#: "auto" keeps the last epoch when the validation split's smallest class has fewer images than this
#: (`resolve_monitor`): a recall measured on a handful of images is mostly noise.
MIN_VAL_IMAGES_PER_CLASS = 10

#: Fewest images per batch: BatchNorm layers cannot learn from a batch of one (its variance is zero).
MIN_BATCH_SIZE = 2
#: Largest random shift accepted, in pixels (the studio offers 0-4).
MAX_AUGMENT_SHIFT = 16
#: Strongest colour jitter accepted: augment.py scales contrast by 1 ± 2·strength, which must not invert images.
MAX_COLOR_JITTER = 0.5


class TrainingError(CnnError):
    """Training could not go on (e.g. the loss became NaN)."""


@dataclass
class TrainConfig:
    """Every option of a run; None means "the model's default for this data set"."""

    dataset: str
    model: str | None = None
    model_args: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float | None = None  # None: what suits the data (`default_label_smoothing`)
    ema_decay: float | None = None  # exponential moving average of the weights per step; None: `default_ema_decay`
    patience: int | None = None  # early stopping: epochs without improvement of `monitor`
    monitor: str = "auto"  # which epoch the checkpoint keeps (MONITORS); "auto": `resolve_monitor`
    seed: int = 0
    device: str | None = None
    limit: int | None = None  # use at most this many images per split (quick classroom runs)
    augment: AugmentConfig | None = None  # None: what suits the data set
    class_weights: str = "auto"  # loss weights per class: "balanced", "sqrt", "none", "auto" (`_class_weights`)
    tta: bool = True  # test metrics average the orientations the augmentation taught (augment.orientations_taught)
    image_size: int | None = None  # side the images are resized to; None: `default_image_size`
    out: str | None = None  # checkpoint path (".safetensors"); None: not saved
    command: str = ""  # how the run was started, recorded in the checkpoint card
    log_every: int | None = None  # batch events every N steps (None: about 50 per epoch)


@dataclass
class ResolvedConfig:
    """The run's options with every default filled in, as recorded in the card."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    schedule: str
    augment: AugmentConfig
    class_weights: str = "none"  # "balanced", "sqrt" or "none" ("auto" decided from the training classes)
    monitor: str = "val_accuracy"  # never "auto": decided from the model, the task and the class weights
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # 0: the checkpoint holds the trained weights themselves
    image_size: int | None = None  # side trained at (`default_image_size`); None: the data set's own


def resolve_config(config: TrainConfig, info: DatasetInfo) -> ResolvedConfig:
    """Fill in the model's defaults for this data set and check every option is in range."""
    model = config.model or default_model(info, config.limit)
    spec = get_model_spec(model)
    d = spec.defaults
    image_size = config.image_size or default_image_size(info, replace(config, model=model))
    epochs, batch_size = default_recipe(d, info, replace(config, model=model, image_size=image_size))
    resolved = ResolvedConfig(
        model=model,
        epochs=config.epochs if config.epochs is not None else epochs,
        batch_size=config.batch_size if config.batch_size is not None else batch_size,
        lr=config.lr if config.lr is not None else d.get("lr", 1e-3),
        optimizer=(config.optimizer or d.get("optimizer", "adamw")).lower(),
        schedule=(config.schedule or d.get("schedule", "none")).lower(),
        augment=config.augment if config.augment is not None else default_augment(info.family, info.task, info.name),
        class_weights=_class_weights(config.class_weights, info),
        label_smoothing=(config.label_smoothing if config.label_smoothing is not None
                         else default_label_smoothing(info, model)),
        ema_decay=config.ema_decay if config.ema_decay is not None else default_ema_decay(info, model),
        image_size=image_size,
    )
    resolved.monitor = resolve_monitor(config.monitor, model, config.patience, info, config.limit)
    check_options(resolved, config)
    return resolved


def resolve_monitor(asked: str, model: str, patience: int | None, info: DatasetInfo,
                    limit: int | None = None) -> str:
    """The validation figure that picks the checkpoint's epoch. "auto", unless early stopping (`patience`) needs a
    score:
    - the last epoch for transfer models (the model's hint: their validation sets are a few dozen images) and for
      sets whose smallest validation class has fewer than `MIN_VAL_IMAGES_PER_CLASS` images (after `limit`, the
      images per split). Measured with the Small ResNet on PathMNIST subsets (benchmarks/bench_small_sets.py
      --seeds 3, means of seeds 0-2, test accuracy / ROC-AUC, last epoch against the best by validation):
      two classes at 10:1, 7 validation images in the smaller class, 83.2 % / 0.921 against 80.2 % / 0.893;
      seven classes at 10:1, 2 in the smallest, 72.4 % / 0.935 against 72.1 % / 0.932; two classes at 3:1, 19 in
      the smaller (so not switched), 91.8 % / 0.981 against 91.9 % / 0.977. The one-cycle schedule anneals the
      final weights, so the last epoch is a sound choice when the validation figure cannot choose.
    - balanced accuracy (the mean of the two classes' recalls) for other two-class sets, where plain accuracy
      rewards predicting the larger class. Measured with FastNet-32 on a 3:1 subset: 88.0 % test accuracy against
      82.2 % by validation accuracy;
    - accuracy for more classes: seven and eight imbalanced classes gave 61.7 % and 71.0 % by balanced accuracy
      against 64.8 % and 74.9 % by accuracy (FastNet-32; a recall averaged over classes with a handful of
      validation images each is mostly noise)."""
    if asked != "auto":
        return asked
    if patience is None:
        if get_model_spec(model).defaults.get("monitor") == "last":
            return "last"
        smallest = smallest_validation_class(info, limit)
        if smallest is not None and smallest < MIN_VAL_IMAGES_PER_CLASS:
            return "last"
    if not info.multi_label and len(info.class_names) == 2:
        return "val_balanced_accuracy"
    return "val_accuracy"


def smallest_validation_class(info: DatasetInfo, limit: int | None = None) -> int | None:
    """Images of the validation split's smallest class, scaled down when `limit` (images per split) subsets it;
    None for multi-label sets, sets without a validation split, and when the counts cannot be read."""
    from ..data.registry import class_counts

    if info.multi_label:
        return None
    try:
        val = class_counts(info.name).get("val") or []
    except CnnError:
        return None
    total = sum(val)
    if not total:
        return None
    share = min(1.0, limit / total) if limit else 1.0
    return math.floor(min(val) * share)


def default_label_smoothing(info: DatasetInfo, model: str) -> float:
    """Label smoothing (Szegedy et al., 2016: the target puts 1 - ε on the true class and spreads ε over all
    classes) of a run that does not say: `MEDMNIST_LABEL_SMOOTHING` for MedMNIST sets trained from scratch that
    have two classes or `SMALL_SET_IMAGES` training images or more; none for digits, image folders, transfer
    models and small multi-class sets. Measured with FastNet-32 (benchmarks/bench_small_sets.py --seeds 3,
    PathMNIST subsets; means of seeds 0-2, test accuracy / ROC-AUC):
    - two classes at 10:1 (546 images): 79.3 % / 0.886 with it, 74.5 % / 0.846 without (better for every seed);
    - two classes at 3:1 (546 images): 86.3 % / 0.939 with it, 86.0 % / 0.942 without;
    - seven classes at 10:1 (500 images): 64.4 % / 0.866 with it, 65.5 % / 0.883 without (so none there);
    - PathMNIST (89,996 images), seeds 0 / 1: 91.24 / 91.21 % with it, 90.99 / 91.28 % without: within seed
      noise, but both seeds clear MedMNIST v2's best 91.1 % with it."""
    if info.family != "medmnist" or is_transfer_model(model):
        return 0.0
    binary = not info.multi_label and len(info.class_names) == 2
    n_train = (info.n_samples or {}).get("train") or 0
    return MEDMNIST_LABEL_SMOOTHING if binary or n_train >= SMALL_SET_IMAGES else 0.0


def default_ema_decay(info: DatasetInfo, model: str) -> float:
    """Decay of the weights' exponential moving average of a run that does not say: 0 (off) for now."""
    return 0.0


def default_model(info: DatasetInfo, limit: int | None = None) -> str:
    """The registry's default model (`default_model_for`) for this data set, `limit` images per split."""
    return default_model_for(info.family, info.image_size, _train_images(info, limit),
                             None if info.multi_label else len(info.class_names))


def _train_images(info: DatasetInfo, limit: int | None) -> int | None:
    """Training images the run will see (`--limit` counts; an image folder's readable files only, as its
    loading counts them), None when the data set does not say."""
    n_train = (info.n_samples or {}).get("train")
    if info.family == "folder":
        from ..data.registry import split_sizes

        try:
            n_train = split_sizes(info.name).get("train", n_train)
        except CnnError:
            pass
    return min(n_train, limit) if n_train and limit else n_train


def default_image_size(info: DatasetInfo, config: TrainConfig) -> int | None:
    """The side a small set's images are resized to when the run names none; None: the data set's own side.

    A training set under `SMALL_SET_IMAGES` images gets a budget of image passes that shrinks with the pixel
    count (`default_recipe`), so large images got few epochs: BreastMNIST's 546 images at 224 px got one. Its
    side is halved while the half is at least `MIN_DEFAULT_SIDE` (224 -> 28, 128 -> 32, 64 -> 32): within the
    same budget the model sees each image many more times. Measured (`benchmarks/bench_small_sets.py`, idle
    2-core CPU, test accuracy / balanced accuracy / ROC-AUC, means of seeds 0-4 or 0-2):
    - the brain-MRI folder (202 training images of 128 px; each seed draws another split): at 32 px 92.3 % /
      90.4 % / 0.980 (300 epochs, 9 s), at 64 px 85.4 % / 82.9 % / 0.914 (134 epochs, 13 s), at 128 px 83.8 % /
      82.0 % / 0.886 (36 epochs, 13 s);
    - a BreastMNIST-like set enlarged to 224 px (`--like-medmnist --side 224`, Small ResNet): at 28 px 84.8 % /
      85.9 % / 0.935, at 56 px 81.2 % / 81.4 % / 0.920, at 224 px 69.4 % / 56.5 % / 0.714 (one epoch), 7-13 s.
    Transfer models keep their backbone's input size; a run that names `image_size` keeps it."""
    if config.image_size is not None or is_transfer_model(config.model or "") or info.multi_label:
        return None
    n_train = _train_images(info, config.limit) or 0
    if not MIN_BATCH_SIZE <= n_train < SMALL_SET_IMAGES:
        return None
    floor = max(MIN_DEFAULT_SIDE, get_model_spec(config.model).min_image_size if config.model else 0)
    side = info.image_size
    while side // 2 >= floor:
        side //= 2
    return None if side == info.image_size else side


def small_side_reason(native: int, side: int) -> str:
    """Why a small set trains at `side` instead of its own `native` side (`default_image_size`), for the CLI's
    note and the studio's caption."""
    return (f"trained at {side}×{side}, not {native}×{native}: with a set this small, many epochs at a small size "
            "learn more than a few at full size in the same time")


def default_recipe(model_defaults: dict, info: DatasetInfo, config: TrainConfig) -> tuple[int, int]:
    """(epochs, batch size) of a run that names neither.

    - A training set under `SMALL_SET_IMAGES` images gets enough epochs for `MIN_DEFAULT_STEPS` optimizer steps
      (the model's "small_set_steps" where it costs more per image), at most `MAX_AUTO_EPOCHS` and at most as
      many image passes as those steps in batches of 128 (the model's "small_set_batch"), at 28 px, scaled by
      (28 / side)² (`side`: the training images' side in pixels); its batch shrinks (not below
      `MIN_AUTO_BATCH`) until those passes make the steps.
    - A larger set gets the model's epochs, raised towards the model's "max_epochs" while the run stays within
      `LARGE_PASS_BUDGET_28PX` x (28 / side)² passes: PathMNIST keeps FastNet-32's 24 epochs; BloodMNIST-sized
      sets get 32. Measured with FastNet-32 on PathMNIST, idle 2-core CPUs (MedMNIST v2's best: 91.1 %):
      32 epochs 91.45 / 91.52 % test accuracy (seeds 0 / 1), 421-438 s of training on a faster machine;
      24 epochs 91.30 / 91.41 % (seeds 0 / 1; earlier recipes 91.03-91.28 %), 467 s on the slower machine on
      one day and 655 s on the next (27 s an epoch, where 32 epochs would take about 870 s). Bigger or
      larger-image sets (TissueMNIST, 64-px PathMNIST) keep the model's epochs.
    - A batch size given in `config` is kept. Transfer models keep theirs: ImageNet features learn from few steps.
      A default batch never exceeds the training set (16 images train in batches of 16, not of 98).
    """
    n_train = _train_images(info, config.limit)  # once: a folder's readable files are counted
    epochs, batch = _default_epochs_and_batch(model_defaults, info, config, n_train or 0)
    if config.batch_size is None and n_train:
        batch = min(batch, max(MIN_BATCH_SIZE, n_train))
    return epochs, batch


def _default_epochs_and_batch(model_defaults: dict, info: DatasetInfo, config: TrainConfig,
                              n_train: int) -> tuple[int, int]:
    epochs, batch = int(model_defaults.get("epochs", 5)), int(model_defaults.get("batch_size", 128))
    min_steps = int(model_defaults.get("small_set_steps", MIN_DEFAULT_STEPS))
    small_batch = int(model_defaults.get("small_set_batch", PASS_BUDGET_28PX // MIN_DEFAULT_STEPS))
    side = config.image_size or default_image_size(info, config) or info.image_size or 28
    if is_transfer_model(config.model or "") or n_train < MIN_BATCH_SIZE:
        return epochs, config.batch_size or batch
    if n_train >= SMALL_SET_IMAGES:
        fits = int(LARGE_PASS_BUDGET_28PX * (28 / side) ** 2 // n_train)
        return max(epochs, min(int(model_defaults.get("max_epochs", epochs)), fits)), config.batch_size or batch
    passes = min_steps * small_batch * (28 / side) ** 2
    batch = config.batch_size or max(MIN_AUTO_BATCH, min(batch, int(passes // min_steps)))
    steps = steps_per_epoch(n_train, max(MIN_BATCH_SIZE, min(batch, n_train)))
    wanted = max(epochs, math.ceil(min_steps / max(1, steps)))
    return max(1, min(wanted, MAX_AUTO_EPOCHS, int(passes // n_train))), batch


def _class_weights(asked: str, info: DatasetInfo) -> str:
    """"auto", when the training classes differ by `WEIGHTED_FROM_RATIO` or more: square-root weights for two
    classes, none for more. Measured on PathMNIST subsets with MedMNIST sets' class counts, tested on images as
    imbalanced as their training split, as MedMNIST's test splits are (`benchmarks/bench_small_sets.py
    --like-medmnist --seeds 2`, means of seeds 0-1, test accuracy / balanced accuracy / ROC-AUC):

    | like            | balanced               | sqrt                   | none                   |
    |-----------------|------------------------|------------------------|------------------------|
    | BreastMNIST     | 86.9 / 90.3 / 0.969    | 84.9 / 88.6 / 0.961    | 88.8 / 82.9 / 0.951    |
    | PneumoniaMNIST  | 63.0 / 67.4 / 0.782    | 73.1 / 69.8 / 0.777    | 67.4 / 63.7 / 0.756    |
    | RetinaMNIST (5) | 62.0 / 67.6 / 0.895    | 71.1 / 64.6 / 0.914    | 71.0 / 53.8 / 0.924    |
    | DermaMNIST (7)  | 31.8 / 40.0 / 0.813    | 80.8 / 57.1 / 0.909    | 85.2 / 54.9 / 0.925    |
    | BloodMNIST (8)  | 86.5 / 85.4 / 0.985    | 88.1 / 85.8 / 0.987    | 87.1 / 83.3 / 0.985    |

    Balanced weights (n / (C n_c)) move the decision so far towards the small classes that accuracy falls, down to
    32 % on DermaMNIST's 58:1 (its best epoch was the first); they had looked better on a test split from another
    clinic, as balanced as PathMNIST's. With two classes, square-root weights gave the best mean accuracy and
    nearly the best ROC-AUC. With more, square-root weights gave the better balanced accuracy on all three sets
    and tied or beat no weights' accuracy at 7:1 and 2.7:1, but lost 4.4 points of accuracy and 0.016 of ROC-AUC
    at DermaMNIST's 58:1, where the target's margin is smallest (MedMNIST's ResNet-18 reaches 73.5 % with the
    largest class alone at 67 %): no weights, as MedMNIST's ResNet baselines were trained, gave the best ROC-AUC
    on two of three sets and never fell far behind on accuracy, the two figures MedMNIST reports. The studio and the test report show balanced accuracy
    beside accuracy for imbalanced sets, and two-class sets keep the epoch with the best balanced accuracy."""
    if asked != "auto" or info.multi_label:
        return "none" if asked == "auto" else asked
    from ..data.registry import class_counts

    try:
        train = [c for c in class_counts(info.name)["train"] if c]
    except (CnnError, KeyError):
        return "none"
    if len(train) != 2 or max(train) < WEIGHTED_FROM_RATIO * min(train):
        return "none"
    return "sqrt"


def check_options(r: ResolvedConfig, config: TrainConfig) -> None:
    """ConfigError with a clear message for any option out of range."""
    if not 1 <= r.epochs <= 1000:
        raise ConfigError(f"Epochs must be between 1 and 1000; got {r.epochs}.")
    if r.batch_size < MIN_BATCH_SIZE:
        raise ConfigError(
            f"Batch size must be at least {MIN_BATCH_SIZE} (BatchNorm layers cannot learn from one image at a time); "
            f"got {r.batch_size}."
        )
    if r.batch_size > 65536:
        raise ConfigError(f"Batch size must be between {MIN_BATCH_SIZE} and 65536; got {r.batch_size}.")
    if not (0 < r.lr <= 10) or math.isnan(r.lr):
        raise ConfigError(f"Learning rate must be above 0 and at most 10; got {r.lr}.")
    if r.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer {r.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
    if r.schedule not in SCHEDULES:
        raise ConfigError(f"Unknown schedule {r.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
    if r.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"Unknown class weights {r.class_weights!r}; choose one of {', '.join(CLASS_WEIGHTS)}.")
    if config.monitor not in MONITORS:
        raise ConfigError(f"Unknown monitor {config.monitor!r}; choose one of {', '.join(MONITORS)}.")
    if config.patience is not None and config.patience < 1:
        raise ConfigError(f"Patience must be at least 1 epoch; got {config.patience}.")
    if config.patience is not None and r.monitor == "last":
        raise ConfigError(
            "Patience (early stopping) watches a validation score, but this run keeps the last epoch (monitor "
            "'last'), so it would never stop early: choose monitor val_accuracy or val_loss, or no patience."
        )
    if not 0 <= r.label_smoothing < 1:
        raise ConfigError(f"Label smoothing must be in [0, 1); got {r.label_smoothing}.")
    if not 0 <= r.ema_decay < 1 or math.isnan(r.ema_decay):
        raise ConfigError(f"The EMA decay must be in [0, 1) (0: off; 0.999 averages about the last 1,000 steps); "
                          f"got {r.ema_decay}.")
    if not 0 <= config.weight_decay <= 1:  # NaN fails this too
        raise ConfigError(f"Weight decay must be between 0 and 1 (5e-4 is usual with SGD); got {config.weight_decay}.")
    if not 0 <= config.momentum < 1:
        raise ConfigError(f"Momentum must be in [0, 1) (0.9 is usual); got {config.momentum}.")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ConfigError(f"The seed must be a whole number from 0 to {2**32 - 1}; got {config.seed!r}.")
    if config.limit is not None and config.limit < 2:
        raise ConfigError(f"--limit must be at least 2 images; got {config.limit}.")
    if not 0 <= r.augment.shift <= MAX_AUGMENT_SHIFT:
        raise ConfigError(f"Random shift must be between 0 and {MAX_AUGMENT_SHIFT} pixels; got {r.augment.shift}.")
    if not 0 <= r.augment.color_jitter <= MAX_COLOR_JITTER:
        raise ConfigError(
            f"Colour jitter must be between 0 and {MAX_COLOR_JITTER:g}; got {r.augment.color_jitter:g}."
        )
    if not 0 <= r.augment.grayscale <= 1:
        raise ConfigError(f"The grayscale probability must be between 0 and 1; got {r.augment.grayscale:g}.")


def checkpoint_keeps(monitor: str, epoch: int | None = None) -> str:
    """Which epoch a checkpoint holds, in words, for a resolved monitor: "the last epoch (5)", "epoch 3, the one
    with the best validation accuracy", or without `epoch` "the epoch with the best validation accuracy"."""
    if monitor == "last":
        return "the last epoch" + (f" ({epoch})" if epoch else "")
    figure = MONITOR_FIGURES.get(monitor, monitor)
    return f"epoch {epoch}, the one with {figure}" if epoch else f"the epoch with {figure}"


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Gradient steps in one epoch: a ragged last batch of a single image is skipped (BatchNorm cannot
    learn from it), so 17 images in batches of 8 make 2 steps. Estimates (the studio's) use this too."""
    full, rest = divmod(n_train, batch_size)
    return full + (1 if rest >= MIN_BATCH_SIZE else 0)


def folder_image_size(model: str, model_args: dict | None) -> int | None:
    """The side image-folder pictures are loaded at when the run names none: a transfer model's `input_size`
    (so `--model-arg input_size=288` reads the files at 288 px instead of enlarging 224-px copies), else the
    model's own default (None: the data set's usual 128 px)."""
    default = get_model_spec(model).defaults.get("folder_image_size")
    asked = (model_args or {}).get("input_size")
    if default is not None and isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return asked
    return default
