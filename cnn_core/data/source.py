"""The one protocol every data family implements: MNIST, MedMNIST and image folders are `DataSource`s.

The registry resolves a name to a source and asks it the same questions whatever its family: is it here
(`status`), which files and what fingerprint (`locate`), the tensors of a split (`build`), and for the
families that can be downloaded, what to fetch (`download_plan`) and how to put it in place (`install`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DataError
from .cache import resize_uint8
from .download import DownloadPlan
from .types import DatasetInfo, DatasetStatus

#: What `build` returns per split: images uint8 [N, C, S, S], labels int64, files skipped as unreadable.
BuiltSplit = tuple[torch.Tensor, torch.Tensor, int]
#: Told the fraction (0-1) of a split read so far, while a source is read (sources that can tell).
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Located:
    """A source's files as found now: their fingerprint keys the caches; `files` is the family's own record."""

    fingerprint: str
    location: Path | None
    files: object


class DataSource(ABC):
    """One data set of one family. Built by the registry for each request (cheap: no image is read)."""

    info: DatasetInfo

    @abstractmethod
    def status(self) -> DatasetStatus:
        """Whether the files are here, where, and how to get them; looks at files only."""

    @abstractmethod
    def locate(self) -> Located | None:
        """The files to read and their fingerprint, or None when some are missing."""

    @abstractmethod
    def read(self, located: Located, split: str, progress: Progress | None = None) -> dict[str, BuiltSplit]:
        """Read `split` (maybe more splits at once) at the data set's own image size."""

    def build(self, located: Located, split: str, size: int,
              progress: Progress | None = None) -> dict[str, BuiltSplit]:
        """Read the sources: {split: (images, labels, skipped)} with images `size` px square (bilinear,
        antialiased when resized)."""
        built = self.read(located, split, progress)
        if size == self.info.image_size:
            return built
        return {key: (resize_uint8(images, size), labels, skipped) for key, (images, labels, skipped) in built.items()}

    def split_sizes(self) -> dict[str, int]:
        """Images per split that loading returns, without loading them."""
        return dict(self.info.n_samples or {})

    def empty_split_hint(self) -> str:
        return "the source file holds no images for it."

    def notes(self) -> list[str]:
        """Warnings for people about this data set's files (unreadable files, classes too small to split)."""
        return []

    def missing_error(self) -> DataError:
        status = self.status()
        searched = ", ".join(str(p) for p in status.searched)
        return DataError(
            f"{status.info.title} is not available here: {', '.join(status.missing)} not found "
            f"(looked in {searched}). {status.how_to_get}"
        )

    def download_plan(self) -> DownloadPlan:
        """Which files to fetch from where; DataError for families that are not downloaded."""
        raise DataError(f"{self.info.name!r} is an image folder ({self.info.root}); there is nothing to download.")

    def download_complete(self, plan: DownloadPlan) -> bool:
        return all((plan.folder / name).is_file() for name in plan.installed_names)

    def install(self, plan: DownloadPlan, parts: dict[str, Path]) -> None:
        """Move checked downloads (temporary files, by served file name) into `plan.folder`."""
        for filename, part in parts.items():
            part.replace(plan.folder / filename)
