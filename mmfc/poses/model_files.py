"""The model files of stage 0: where they come from, how they are checked, how they are opened.

BlazePose's detector and full landmark model, and the face and hand models of MediaPipe's
Holistic (for close-ups, mmfc/poses/face.py and hands.py), all inside the official
`mediapipe==0.10.21` wheel (Apache-2.0); `make setup-pose` downloads that wheel with `pip
download --no-deps` and runs `python -m mmfc.poses.model_files WHEEL OUT_DIR`, which checks
every sha256 value and unpacks only these files. Nothing is ever downloaded at run time:
`model_paths` reads a local folder and names the make target when a file is missing.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

from mmfc.errors import DataError

WHEEL_VERSION = "0.10.21"
# file name -> (path inside the wheel, sha256)
MODEL_FILES = {
    "pose_detection.tflite": (
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
    "pose_landmark_full.tflite": (
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
    # MediaPipe Holistic's face path for close-ups (mmfc/poses/face.py) ...
    "face_detection_short_range.tflite": (
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "face_landmark.tflite": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
    # and its hand path (mmfc/poses/hands.py), with the lite hand landmark model (MediaPipe
    # Hands' model_complexity 0): half the full one's cost, the same figures (hands.py).
    "hand_recrop.tflite": (
        "mediapipe/modules/holistic_landmark/hand_recrop.tflite",
        "67d996ce96f9d36fe17d2693022c6da93168026ab2f028f9e2365398d8ac7d5d",
    ),
    "hand_landmark_lite.tflite": (
        "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
        "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
    ),
}
SETUP_HINT = "run `make setup-pose` (it unpacks the pose and face models from the mediapipe wheel)"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unpack_models(wheel: str | Path, out_dir: str | Path) -> list[Path]:
    """Check and unpack the model files from the mediapipe wheel. -> the written paths."""
    wheel, out_dir = Path(wheel), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(wheel, f"not a readable wheel: {exc}") from None
    with archive:
        for name, (member, expected) in MODEL_FILES.items():
            try:
                data = archive.read(member)
            except KeyError:
                raise DataError(wheel, f"has no {member}; expected mediapipe=={WHEEL_VERSION}") from None
            if sha256(data) != expected:
                raise DataError(wheel, f"{member} has sha256 {sha256(data)}, expected {expected}")
            path = out_dir / name
            tmp = path.with_name(f".tmp-{name}")
            tmp.write_bytes(data)
            tmp.replace(path)
            written.append(path)
    return written


def model_paths(models_dir: str | Path) -> dict[str, Path]:
    """The model files in `models_dir`; a missing or altered one raises DataError."""
    # Absolute, so that a message names the file it looked for whatever the working folder.
    models_dir = Path(models_dir).absolute()
    paths = {}
    for name, (_, expected) in MODEL_FILES.items():
        path = models_dir / name
        if not path.is_file():
            raise DataError(path, f"pose model file is missing: {SETUP_HINT}")
        if sha256(path.read_bytes()) != expected:
            raise DataError(path, f"not the expected pose model (sha256 differs): {SETUP_HINT}")
        paths[name] = path
    return paths


def open_interpreter(path: Path, threads: int):
    """A LiteRT interpreter over one model file, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise DataError(path, f"the LiteRT runtime (ai-edge-litert) is not installed: {SETUP_HINT}") from None
    with native_stderr_quiet():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


@contextmanager
def native_stderr_quiet():
    """Hide what native code writes to stderr meanwhile: LiteRT announces its XNNPACK delegate
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") once per process, so once per
    pose worker, into the progress display, and no setting turns it off. Python's own errors
    still arrive as exceptions; the model files were checked against their sha256 before."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tensor_indices(interpreter) -> tuple[int, dict[str, int]]:
    """An interpreter's input tensor index and its output tensor indices by name, looked up
    once: asking for them on every run costs more than a small model's cut-out."""
    return interpreter.get_input_details()[0]["index"], {d["name"]: d["index"] for d in interpreter.get_output_details()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m mmfc.poses.model_files MEDIAPIPE_WHEEL OUT_DIR", file=sys.stderr)
        return 2
    try:
        for path in unpack_models(*argv):
            print(f"{path} (sha256 checked)")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
