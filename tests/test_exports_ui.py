"""Page pieces run headless (Streamlit's AppTest where they draw): the TensorBoard download
(`cnn_explorer_ui.exports.tensorboard_download`: a button for a run with a log, a caption for one without), the
studio's image-size control (`studio_setup.choose_image_size`), Predict's samples at the trained size, and a tab
left open after its browser was forgotten (`session.stop_if_forgotten`)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from streamlit.testing.v1 import AppTest  # noqa: E402

from cnn_core.models.card import Card  # noqa: E402
from cnn_core.runs import run_log_dir  # noqa: E402
from cnn_core.training import BatchEvent, EndEvent, StartEvent  # noqa: E402
from cnn_core.training.tensorboard import tensorboard_logged  # noqa: E402

RUN_WITH_LOG = "aaaabbbbccccdddd0000111122223333"
RUN_WITHOUT_LOG = "ffffeeeeddddcccc0000111122223333"


def _page():
    from cnn_explorer_ui.exports import tensorboard_download, tensorboard_file, _log_stamp

    tensorboard_download("aaaabbbbccccdddd0000111122223333")
    tensorboard_download("ffffeeeeddddcccc0000111122223333")
    import streamlit as st

    st.session_state["zip"] = tensorboard_file("aaaabbbbccccdddd0000111122223333",
                                               _log_stamp("aaaabbbbccccdddd0000111122223333"))


def _write_log(run_id: str) -> None:
    card = Card(model="fastnet", dataset="mnist", class_names=("0", "1"), channels=1, image_size=28,
                normalization={"mean": [0.13], "std": [0.31]})  # fmt: skip
    events = [StartEvent("mnist", "fastnet", "CPU", 10, 2, 2, 1, 1, {}),
              BatchEvent(step=1, epoch=1, loss=0.5, accuracy=1.0, lr=0.01, seconds=0.1),
              EndEvent(1, 1, 0.1, None, None, False, False, card)]  # fmt: skip
    list(tensorboard_logged(iter(events), run_log_dir(run_id)))


def test_a_run_with_a_log_gets_a_zip_button_and_one_without_a_caption():
    _write_log(RUN_WITH_LOG)
    app = AppTest.from_function(_page, default_timeout=120).run()
    assert not app.exception
    buttons = app.get("download_button")
    assert len(buttons) == 1 and "TensorBoard log" in buttons[0].proto.label
    assert [caption.value for caption in app.caption] == ["No TensorBoard log for this run."]
    names = zipfile.ZipFile(io.BytesIO(app.session_state["zip"])).namelist()
    assert any(name.startswith(RUN_WITH_LOG[:8] + "/events.out.tfevents") for name in names)


def test_monte_carlo_whiskers_stop_at_0_and_100_percent():
    # an 81.1 % ± 23.6 % bar drew its whisker past 100 % and over its own label
    from cnn_explorer_ui.predict_views import probability_chart

    figure = probability_chart(["no", "yes"], np.array([0.189, 0.811]), np.array([0.236, 0.236]))
    bar = figure.data[0]
    np.testing.assert_allclose(np.asarray(bar.x) + np.asarray(bar.error_x.array), [0.425, 1.0])
    np.testing.assert_allclose(np.asarray(bar.x) - np.asarray(bar.error_x.arrayminus), [0.0, 0.575])
    assert "81.1% (sd 23.6%)" in figure.data[1].text[1].replace(" %", "%")  # "±" read as a negative probability


def _sizes_page():
    import streamlit as st

    from cnn_core import data, models
    from cnn_explorer_ui.studio_setup import choose_image_size

    for name in ("breastmnist_64", "scans", "breastmnist", "mnist"):
        st.session_state[f"side_{name}"] = choose_image_size(data.get_dataset_info(name),
                                                             models.get_model_spec("resnet_small"))


def test_the_studio_offers_larger_medmnist_images_their_sizes_starting_where_the_command_line_does(tiny_data_dir):
    # The studio could not train a small 64-224 px MedMNIST set at its own size: the run always took the
    # command line's default side (half, or less), with no control to say otherwise.
    from data_fixtures import tiny_breastmnist_arrays, write_npz

    write_npz(tiny_data_dir / "medmnist" / "breastmnist_64.npz",
              {k: (np.repeat(np.repeat(v, 3, 1), 3, 2)[:, :64, :64] if "images" in k else v)
               for k, v in tiny_breastmnist_arrays().items()})  # fmt: skip
    app = AppTest.from_function(_sizes_page, default_timeout=120).run()
    assert not app.exception
    assert len(app.select_slider) == 2  # 64-px MedMNIST and the image folder; nothing for 28-px sets
    medmnist, folder = app.select_slider
    assert list(medmnist.options) == ["32", "64"] and medmnist.value == 32  # 40 images: half the side
    assert list(folder.options) == ["32", "64", "96", "128"] and folder.value == 32
    assert "(64×64)" in medmnist.help
    said = [caption.value for caption in app.caption]
    assert any("Trained at 32×32, not 64×64: with a set this small" in text for text in said), said  # why 32
    assert app.session_state["side_breastmnist"] is None and app.session_state["side_mnist"] is None
    medmnist.set_value(64).run()
    assert app.session_state["side_breastmnist_64"] == 64  # its own size, when asked
    assert not any("not 64×64" in caption.value for caption in app.caption)


def test_a_predict_sample_is_resized_as_its_model_s_training_set_was(tiny_data_dir):
    # A 64-px set trained at 32 px: Pillow resized its test images for the model, unlike training's torch resize.
    from cnn_core import data
    from cnn_explorer_ui.data_sets import sample_as_trained, test_split
    from data_fixtures import tiny_breastmnist_arrays, write_npz

    write_npz(tiny_data_dir / "medmnist" / "breastmnist_64.npz",
              {k: (np.repeat(np.repeat(v, 3, 1), 3, 2)[:, :64, :64] if "images" in k else v)
               for k, v in tiny_breastmnist_arrays().items()})  # fmt: skip
    pictures = test_split("breastmnist_64")[0]
    assert pictures.shape[1:] == (1, 64, 64)
    trained_at_32 = data.load_split("breastmnist_64", "test", image_size=32).images[3].numpy()
    assert np.array_equal(sample_as_trained(pictures, "breastmnist_64", 3, 32), trained_at_32)
    assert np.array_equal(sample_as_trained(pictures, "breastmnist_64", 3, None), pictures[3])  # another set's
    assert np.array_equal(sample_as_trained(pictures, "breastmnist_64", 3, 64), pictures[3])


def _stale_tab():
    import streamlit as st

    from cnn_explorer_ui.session import browser_id, stop_if_forgotten

    browser_id()
    stop_if_forgotten()
    st.write("the page")


def test_a_tab_left_open_after_its_browser_was_forgotten_stops_and_says_to_reload(tiny_data_dir, monkeypatch):
    from cnn_core.runs import RunStore

    live, gone = "1" * 32, "2" * 32
    RunStore().mark_forgotten(gone)
    for owner, stops in ((live, False), (gone, True)):
        app = AppTest.from_function(_stale_tab)
        app.session_state["browser_id"] = owner
        app.run()
        assert not app.exception
        assert bool(app.warning) is stops and ("the page" in [m.value for m in app.markdown]) is not stops
    assert "Reload this page" in app.warning[0].value
    monkeypatch.setenv("CNN_CACHE_DIR", "/proc/no-such-place")  # an unreadable run database takes no page down
    app = AppTest.from_function(_stale_tab)
    app.session_state["browser_id"] = gone
    app.run()
    assert not app.exception and not app.warning and "the page" in [m.value for m in app.markdown]
