"""Which data sets this browser can use: one cached look at the registry for every page.

`dataset_statuses` checks files only (no data is loaded) and is cached for `STATUS_TTL_S` seconds per browser:
new folders under CNN_DATA_DIR show up within that time; an upload or a download clears it at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import streamlit as st

from cnn_core import data
from cnn_core.errors import CnnError

from .session import browser_id

STATUS_TTL_S = 30


@dataclass(frozen=True)
class Availability:
    """A registry data set and whether its files are here: its status, or why it has none (`problem`)."""

    info: data.DatasetInfo
    status: data.DatasetStatus | None
    problem: str = ""

    @property
    def available(self) -> bool:
        return self.status is not None and self.status.available


@st.cache_data(ttl=STATUS_TTL_S, show_spinner="Looking for data sets…")
def dataset_statuses(owner: str) -> dict[str, Availability]:
    """Every registry data set `owner` sees (the shared ones and their uploads; the app registers recorded
    uploads again once when the server starts), in registry order, and whether its files are here."""
    statuses: dict[str, Availability] = {}
    for info in data.list_datasets(owner=owner):
        try:
            statuses[info.name] = Availability(info, data.dataset_status(info.name))
        except CnnError as exc:
            statuses[info.name] = Availability(info, None, str(exc))
    return statuses


def forget_dataset_statuses() -> None:
    """After an upload or a download: the next look at the registry sees it."""
    dataset_statuses.clear()


def browser_datasets() -> list[data.DatasetInfo]:
    """The registry as this browser sees it: every shared data set plus its own uploads."""
    return [found.info for found in dataset_statuses(browser_id()).values()]


def present_datasets() -> dict[str, data.DatasetInfo]:
    """The data sets whose files are on this computer ({name: info}, registry order), uploads included."""
    return {name: found.info for name, found in dataset_statuses(browser_id()).items() if found.available}


def is_present(name: str) -> bool:
    return name in present_datasets()


def dataset_version(status: data.DatasetStatus) -> str:
    """Changes when the data set's files change (a re-uploaded zip, a replaced npz, images added to a
    folder): part of the cache keys, so the gallery never shows a stale summary."""
    location = status.location
    try:
        stamp = os.stat(location).st_mtime_ns if location else "none"
    except OSError:
        stamp = "gone"
    return f"{location}:{stamp}:{status.info.n_samples}"


def test_split(name: str, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """A data set's test split as numpy arrays: (images uint8 [N, C, H, W], labels, class names, title), at
    `image_size` (None: the set's own) resized as training resizes; loaded again when its files change."""
    found = dataset_statuses(browser_id()).get(name)
    return _test_split(name, image_size, dataset_version(found.status) if found and found.status else "")


@st.cache_resource(show_spinner="Loading test images…", max_entries=4)
def _test_split(name: str, image_size: int | None, version: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    split = data.load_split(name, "test", image_size=image_size)
    return split.images.numpy(), split.labels.numpy(), tuple(split.info.class_names), split.info.title


def sample_as_trained(pictures: np.ndarray, name: str, index: int, image_size: int | None) -> np.ndarray:
    """Test image `index` of `pictures` (uint8 [N, C, H, W], `test_split(name)`), resized to `image_size` as
    training resized its set (a small set of 224-px images trains at 28 px by default), so a model sees what it
    was tested on; None, or the pictures' own size: as it is (another data set's image is prepared like an
    upload)."""
    if image_size is None or pictures.shape[-1] == image_size:
        return pictures[index]
    resized, _, _, _ = test_split(name, image_size)
    return resized[index]


def label_of(labels: np.ndarray, index: int, class_names: tuple[str, ...]) -> str | None:
    """The class name of test image `index`; None for multi-label or unknown labels."""
    label = labels[index]
    if np.ndim(label) == 0 and 0 <= int(label) < len(class_names):
        return class_names[int(label)]
    return None
