"""Small decisions of the pages that a browser test would reach only slowly: whose browser sees the server's
folders, and how the Dataset Gallery's bar chart labels its classes."""

from __future__ import annotations

import streamlit as st

from cnn_core.data.types import DatasetInfo
from cnn_explorer_ui import widgets
from cnn_explorer_ui.gallery_views import counts_figure


def test_server_paths_are_shown_only_to_a_browser_on_the_servers_own_machine(monkeypatch):
    context = type(st.context)
    monkeypatch.delenv("CNN_HIDE_SERVER_PATHS", raising=False)
    monkeypatch.setattr(context, "ip_address", property(lambda self: None))  # localhost: Streamlit gives None
    assert widgets.show_server_paths()
    monkeypatch.setenv("CNN_HIDE_SERVER_PATHS", "1")  # e.g. behind a reverse proxy on the same machine
    assert not widgets.show_server_paths()
    monkeypatch.delenv("CNN_HIDE_SERVER_PATHS")
    monkeypatch.setattr(context, "ip_address", property(lambda self: "203.0.113.7"))  # a student's laptop
    assert not widgets.show_server_paths()


def test_the_class_count_chart_labels_every_digit():
    info = DatasetInfo(name="mnist", title="MNIST", family="mnist", class_names=tuple(str(d) for d in range(10)),
                       channels=1, image_size=28, task="multi-class", splits=("train",), source="test",
                       description="", license="", n_samples=None, root=None)
    figure = counts_figure(info, {"train": list(range(10))})
    assert figure.layout.xaxis.type == "category"  # "0".."9" as numbers got a tick at every second class


def test_messages_name_the_servers_folders_by_their_settings_for_a_students_browser(monkeypatch, tmp_path):
    """The engine's messages name paths for the CLI's user; a remote student sees $CNN_DATA_DIR and the like."""
    data_dir, cache_dir = tmp_path / "srv" / "data", tmp_path / "srv" / "data" / "cache"  # one inside the other
    monkeypatch.setenv("CNN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CNN_CACHE_DIR", str(cache_dir))
    message = (f"Put the four MNIST files in {data_dir / 'MNIST' / 'raw'}; downloads go to {cache_dir / 'MNIST'}; "
               f"no checkpoint at {widgets.APP_FOLDER / 'models' / 'x.safetensors'}.")
    monkeypatch.setattr(widgets, "show_server_paths", lambda: True)
    assert widgets.without_server_paths(message) == message
    monkeypatch.setattr(widgets, "show_server_paths", lambda: False)
    assert widgets.without_server_paths(message) == (
        "Put the four MNIST files in $CNN_DATA_DIR/MNIST/raw; downloads go to $CNN_CACHE_DIR/MNIST; "
        "no checkpoint at the app's folder/models/x.safetensors.")


def test_the_server_starts_the_pages_slow_imports_when_it_starts(monkeypatch):
    """app.py's lifespan hook starts `warmup` once per process, so a student's first click on Predict does not wait
    for PyTorch and Grad-CAM to import; CNN_WARM_IMPORTS=0 turns it off."""
    import asyncio
    import threading

    import app
    from cnn_explorer_ui import warmup

    ran = threading.Event()
    monkeypatch.setattr(warmup, "_started", None)
    monkeypatch.setattr(warmup, "_import_all", ran.set)
    monkeypatch.delenv("CNN_WARM_IMPORTS", raising=False)

    async def serve_briefly() -> None:
        async with app.lifespan(app.app):
            pass

    # in a thread of its own: an earlier test (Playwright's sync API) may leave an event loop running in this one
    server = threading.Thread(target=asyncio.run, args=(serve_briefly(),))
    server.start()
    server.join(timeout=30)
    assert ran.wait(timeout=30)
    first = warmup.start_warm_imports()
    assert first is not None and warmup.start_warm_imports() is first  # once per process
    monkeypatch.setattr(warmup, "_started", None)
    monkeypatch.setenv("CNN_WARM_IMPORTS", "0")
    assert warmup.start_warm_imports() is None


def test_names_people_choose_are_shown_as_written_in_markdown():
    """Class folders, file names and shared links went through Streamlit Markdown: `$a^2$` became maths, `[x](url)`
    a link, `# Heading` a heading, `:red[...]` red text. Escaped, each shows its characters (checked in Chromium by
    test_browser_deeplink); GitHub's autolinks ignore escapes, so a zero-width space breaks `www.` and `http:`."""
    assert widgets.literal("cat_$a^2$") == r"cat\_\$a\^2\$"
    assert widgets.literal(":red[**x**]") == r"\:red\[\*\*x\*\*\]"
    assert widgets.literal("# Heading\nline") == r"\# Heading line"
    assert widgets.literal("<img src=x onerror=alert(1)>") == r"\<img src\=x onerror\=alert\(1\)\>"
    assert widgets.literal("see www.example.com or https://e.org") == "see www\u200b\\.example\\.com or https\u200b\\:\\/\\/e\\.org"
    assert widgets.literal("me@uni.edu") == "me\u200b\\@uni\\.edu"
    assert widgets.literal("cancer-associated stroma") == r"cancer\-associated stroma"


def test_card_paths_written_on_one_system_read_on_another(monkeypatch, tmp_path):
    """A card's `$CNN_CACHE_DIR/...` path uses "/" whatever system wrote it (a Windows card on Linux)."""
    from cnn_core import settings

    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CNN_DATA_DIR", str(tmp_path / "data"))
    inside = tmp_path / "cache" / "uploads" / "ab12" / "cats"
    assert settings.portable_path(str(inside)) == "$CNN_CACHE_DIR/uploads/ab12/cats"
    assert settings.local_path("$CNN_CACHE_DIR/uploads/ab12/cats") == str(inside)
    assert settings.local_path("$CNN_CACHE_DIR\\uploads\\ab12\\cats") == str(inside)  # written on Windows
    assert settings.portable_path("/elsewhere/pets") == "/elsewhere/pets" == settings.local_path("/elsewhere/pets")


def test_the_test_images_a_page_shows_follow_the_folders_files(tiny_data_dir, monkeypatch):
    # Predict's test images were cached by the data set's name alone, for the server's life: after a folder's
    # images changed (or an upload's name was given to another zip) the page showed the old images and labels.
    import shutil

    from PIL import Image

    from cnn_explorer_ui import data_sets

    monkeypatch.setattr(data_sets, "browser_id", lambda: "tess")
    data_sets.forget_dataset_statuses()
    _, labels, class_names, _ = data_sets.test_split("scans")
    assert class_names == ("a", "b")
    shutil.rmtree(tiny_data_dir / "scans" / "b")
    for cls in ("b", "c"):
        (tiny_data_dir / "scans" / cls).mkdir()
        for i in range(10):
            Image.new("L", (20, 20), 40 * i).save(tiny_data_dir / "scans" / cls / f"{i}.png")
    data_sets.forget_dataset_statuses()  # what an upload does; otherwise within `STATUS_TTL_S`
    _, labels_now, class_names_now, _ = data_sets.test_split("scans")
    assert class_names_now == ("a", "b", "c") and labels_now.max() == 2
    data_sets.forget_dataset_statuses()
