"""The app's pages: which files under pages/ they are, how the sidebar names them, and their URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = ROOT / "pages"


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its file under pages/, how the sidebar names it, and a line for the home card."""

    file: str
    title: str
    icon: str          # a Material Symbols name (":material/grid_on:"): renders without an emoji font
    url_path: str
    summary: str

    @property
    def path(self) -> Path:
        return ROOT / self.file

    def page(self) -> st.Page:
        """The Streamlit page (by absolute path: the entry script does not live beside pages/)."""
        return st.Page(self.path, title=self.title, icon=self.icon, url_path=self.url_path)


#: The app's pages in teaching order. A page appears once its file exists, so pages can land one by one.
PLANNED_PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/1_convolution_lab.py", "Convolution Lab", ":material/grid_on:", "convolution-lab",
             "Slide a kernel over an image step by step: stride, padding, dilation, pooling and the "
             "output-size formula with your numbers."),
    PageSpec("pages/2_dataset_gallery.py", "Dataset Gallery", ":material/photo_library:", "dataset-gallery",
             "Browse MNIST, MedMNIST and your own image folders: samples per class, counts and pixel values."),
    PageSpec("pages/3_training_studio.py", "Training Studio", ":material/model_training:", "training-studio",
             "Train a CNN and watch loss and accuracy move live; compare runs and keep the best checkpoint."),
    PageSpec("pages/4_model_graph.py", "Model Graph", ":material/account_tree:", "model-graph",
             "See a network's layers, shapes and parameter counts, its autograd graph and its feature maps."),
    PageSpec("pages/5_predict.py", "Predict", ":material/online_prediction:", "predict",
             "Draw a digit or upload a scan, get a prediction and see why the model decided (Grad-CAM)."),
)

_NUMBERED_NAME = re.compile(r"^(?:\d+[_ ]*)?(?P<rest>.+)$")


def available_pages() -> list[PageSpec]:
    """The planned pages whose files exist, then any other `pages/*.py` (not starting with "_")."""
    specs = [spec for spec in PLANNED_PAGES if spec.path.is_file()]
    known = {spec.path.resolve() for spec in specs}
    for path in sorted(PAGES_DIR.glob("*.py")):
        if path.name.startswith("_") or path.resolve() in known or path.stem.startswith("test"):
            continue
        specs.append(_spec_from_file_name(path))
    return specs


def _spec_from_file_name(path: Path) -> PageSpec:
    """A page file that is not planned: "2_🖼️_Dataset_Gallery.py" → icon 🖼️, title "Dataset Gallery"."""
    rest = _NUMBERED_NAME.match(path.stem).group("rest")  # type: ignore[union-attr]
    icon = ""
    first, _, remainder = rest.partition("_")
    if remainder and first and not any(ch.isalnum() for ch in first):
        icon, rest = first, remainder
    title = rest.replace("_", " ").strip() or path.stem
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or path.stem
    return PageSpec(f"pages/{path.name}", title, icon or ":material/description:", slug, "")
