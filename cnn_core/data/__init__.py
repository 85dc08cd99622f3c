"""The data layer: data sets as uint8 tensors, image reading, augmentation and zip import.

`cnn_core.data` is the registry's public face (`list_datasets`, `load_split`, ...). One module per family
(`mnist`, `medmnist`, `folders`) implements the `source.DataSource` protocol; `cache` and `download` serve
them all; `images` reads files safely, `augment` turns uint8 batches into model input, `zipfolder` turns an
uploaded zip into an image folder. This layer imports nothing above it (see docs/ARCHITECTURE.md).
"""

from .download import DownloadProgress
from .images import fit_image
from .mnist import mnist_torchvision_root
from .registry import (
    forget_image_folder,
    same_images_kind,
    channel_stats,
    class_counts,
    clear_caches,
    data_notes,
    dataset_status,
    download_dataset,
    download_server,
    download_server_reachable,
    empty_class_error,
    folder_owner,
    get_dataset_info,
    is_available,
    list_datasets,
    load_split,
    load_splits,
    register_image_folder,
    registered_folder,
    split_sizes,
)
from .types import (
    FOLDER_IMAGE_SIZE,
    FOLDER_SPLIT_FRACTIONS,
    FOLDER_SPLIT_SEED,
    MEDMNIST_2D_FLAGS,
    MEDMNIST_SIZES,
    SPLITS,
    DatasetInfo,
    DatasetStatus,
    SplitData,
    shown_name,
)

__all__ = [
    "DatasetInfo",
    "DatasetStatus",
    "SplitData",
    "DownloadProgress",
    "SPLITS",
    "MEDMNIST_2D_FLAGS",
    "MEDMNIST_SIZES",
    "FOLDER_IMAGE_SIZE",
    "FOLDER_SPLIT_FRACTIONS",
    "FOLDER_SPLIT_SEED",
    "list_datasets",
    "get_dataset_info",
    "dataset_status",
    "is_available",
    "load_split",
    "load_splits",
    "split_sizes",
    "channel_stats",
    "class_counts",
    "data_notes",
    "empty_class_error",
    "register_image_folder",
    "registered_folder",
    "folder_owner",
    "download_dataset",
    "download_server",
    "download_server_reachable",
    "fit_image",
    "mnist_torchvision_root",
    "clear_caches",
    "same_images_kind",
    "forget_image_folder",
    "shown_name",
]
