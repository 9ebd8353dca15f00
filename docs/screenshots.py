"""Take the README's screenshots: TensorBoard dashboards of the digits demo and of the Hugging
Face example, and the HTML report.

Needs Debian's ``chromium`` (``apt-get install chromium``). Run from the repository root:

    .venv/bin/python docs/screenshots.py

It runs the digits demo twice (a normal and a destructive fine-tune, ``--bad``) unless their
logs exist, the checkpoint example for a healthy and a damaged checkpoint, writes
``check --format html`` of the damaged one against a reference of the healthy one, starts
TensorBoard on a free port, and saves PNGs under ``docs/``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNS = ROOT / "build" / "screenshots"  # a build folder: never the user's runs/
PY = sys.executable
SHOTS = {  # file -> (TensorBoard page, window height)
    "tb_custom_scalars.png": ("#custom_scalars", 1500),
    "tb_heatmaps.png": ("#images&tagFilter=filterwatch%2Fheatmaps&_smoothingWeight=0", 1700),
    "tb_filters.png": ("#images&tagFilter=filterwatch_filters", 1100),
    "tb_pc1.png": ("#images&tagFilter=filterwatch%2Fpc1", 1000),
    "tb_alerts.png": ("#text", 900),
}
HF_RUNS = ROOT / "build" / "hf_screenshots"  # apart: the digits board shows the digits runs only
HF_SHOTS = {  # the Hugging Face example: the Trainer's scalars and ours in one run directory
    "tb_hf_scalars.png": ("#scalars&tagFilter=train%2Floss%7Cfilterwatch_model%2F(variance_entropy"
                          "%7Cdrift_ratio%7Crelative_change)%24&_smoothingWeight=0", 1100),
    "tb_hf_text.png": ("#text", 1000),  # the alert table above the Trainer's argument dumps
}


def _run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shoot(url: str, out: Path, height: int, width: int = 1400) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("docs/screenshots.py needs chromium: apt-get install chromium")
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                        f"--screenshot={out}", f"--window-size={width},{height}",
                        "--virtual-time-budget=20000", url], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    print(f"wrote {out.relative_to(ROOT)}")


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    if not (RUNS / "finetune_5-9").is_dir():
        _run(PY, "examples/finetune_digits.py", "--out", str(RUNS))
    if not (RUNS / "finetune_5-9_bad").is_dir():
        _run(PY, "examples/finetune_digits.py", "--bad", "--out", str(RUNS))
    if not (RUNS / "demo" / "digits_cnn_damaged.pt").is_file():
        _run(PY, "examples/scan_checkpoint.py", "--out", str(RUNS / "demo"))
    ref, page = RUNS / "demo" / "healthy.safetensors", RUNS / "demo" / "report.html"
    _run(PY, "-m", "filterwatch", "reference", "build", str(RUNS / "demo" / "digits_cnn.pt"),
         "-o", str(ref), "-q")
    subprocess.run([PY, "-m", "filterwatch", "check", str(RUNS / "demo" / "digits_cnn_damaged.pt"),
                    "--reference", str(ref), "--format", "html", "-o", str(page), "-q"], cwd=ROOT)
    _shoot(page.as_uri(), DOCS / "html_report.png", 2300, 1300)

    _board(RUNS, SHOTS)
    if not HF_RUNS.is_dir():
        _run(PY, "examples/finetune_hf_convnext.py", "--out", str(HF_RUNS))
        _run(PY, "examples/finetune_hf_convnext.py", "--bad", "--out", str(HF_RUNS))
    _board(HF_RUNS, HF_SHOTS)


def _board(logdir: Path, shots: dict[str, tuple[str, int]]) -> None:
    """Start TensorBoard on ``logdir`` and take ``shots``."""
    port = _free_port()
    board = subprocess.Popen([str(Path(PY).with_name("tensorboard")), "--logdir", str(logdir),
                              "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):  # wait until it answers
            try:
                urllib.request.urlopen(f"http://localhost:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(1)
        for name, (fragment, height) in shots.items():
            _shoot(f"http://localhost:{port}/{fragment}", DOCS / name, height)
    finally:
        board.terminate()
        board.wait(timeout=30)


if __name__ == "__main__":
    main()
