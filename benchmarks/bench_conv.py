"""Convolution Lab budget: full-image convolution + the feature map's redraw data for a 512x512 image.

Times what one rerun of the lab computes for the "whole image" view: `cnn_core.conv.convolve` on the
512x512 camera photo, then the value map's payload (a PNG and the float32 values) as JSON, what Streamlit sends
to the browser. Beside it, for comparison, a plotly heatmap of the same map serialised as `st.plotly_chart`
does (what the page drew before). Target: <= 200 ms on the project's CPU.
Run: `python benchmarks/bench_conv.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402

import plotly.graph_objects as go  # noqa: E402
import plotly.io  # noqa: E402

from cnn_core import conv  # noqa: E402
from cnn_core.data import images  # noqa: E402
from cnn_explorer_ui.value_maps import value_map_payload  # noqa: E402

TARGET_MS = 200.0


def _time(function, repeats: int) -> tuple[float, float]:
    function()  # warm-up: first calls pay for lazy imports and allocator growth
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    image = images.to_grayscale_float(images.load_sample_photo("camera"))
    assert image.shape == (512, 512)
    cases = {
        "3x3 Sobel x, zeros padding 1": (conv.preset_kernel("sobel_x"), conv.ConvSettings(padding=1)),
        "7x7 Gaussian, reflect padding 3": (conv.preset_kernel("gaussian_blur", 7),
                                            conv.ConvSettings(padding=3, padding_mode="reflect")),
        "5x5 box, stride 2, dilation 2": (conv.preset_kernel("box_blur", 5), conv.ConvSettings(stride=2, dilation=2)),
    }
    worst = 0.0
    print(f"512x512 input, median / max of {args.repeats} runs")
    for name, (kernel, settings) in cases.items():
        def conv_only():
            return conv.convolve(image, kernel, settings)

        def conv_and_redraw():
            result = conv.convolve(image, kernel, settings)
            return json.dumps(value_map_payload(result.output, "Feature map"))

        def conv_and_plotly():
            result = conv.convolve(image, kernel, settings)
            # what st.plotly_chart sends: plotly.io.to_json(figure, validate=False)
            return plotly.io.to_json(go.Figure(go.Heatmap(z=result.output, colorscale="RdBu_r")), validate=False)

        conv_median, _ = _time(conv_only, args.repeats)
        total_median, total_max = _time(conv_and_redraw, args.repeats)
        plotly_median, _ = _time(conv_and_plotly, args.repeats)
        worst = max(worst, total_median)
        print(f"  {name:34s} convolution {conv_median:6.1f} ms | + value map {total_median:6.1f} ms "
              f"(max {total_max:6.1f}, {len(conv_and_redraw()) / 1e6:.2f} MB) | plotly heatmap instead "
              f"{plotly_median:6.1f} ms ({len(conv_and_plotly()) / 1e6:.2f} MB)")

    sobel_median, _ = _time(lambda: json.dumps(value_map_payload(conv.sobel_magnitude(image).magnitude, "Sobel")),
                            args.repeats)
    print(f"  {'Sobel magnitude + value map':34s} {sobel_median:6.1f} ms")
    worst = max(worst, sobel_median)
    verdict = "within" if worst <= TARGET_MS else "OVER"
    print(f"slowest median {worst:.1f} ms: {verdict} the {TARGET_MS:.0f} ms budget")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
