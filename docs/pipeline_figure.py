"""Draws docs/pipeline.png, the pipeline at a glance that README.md shows.

Run from the repository root after editing the stages: .venv/bin/python docs/pipeline_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("pipeline.png")
STAGE_COLOUR = "#dbe9f6"
FILE_COLOUR = "#f3f3f3"
AFTER_COLOUR = "#e6f2e1"

# (x centre, y centre, width, height, title, detail, colour)
BOXES = {
    "data": (1.0, 3.0, 1.7, 1.5, "your data", "NTU .skeleton + video\npose pickle\nNW-UCLA, Penn Action\nplain videos", FILE_COLOUR),
    "poses": (1.0, 0.9, 1.7, 1.1, "0 poses", "BlazePose + tracking\nfor plain videos", STAGE_COLOUR),
    "crops": (3.3, 3.0, 1.8, 1.5, "1 crops", "decode once;\nskeleton-guided crop\nzarr shards +\nParquet index", STAGE_COLOUR),
    "rgb": (5.7, 3.8, 2.0, 1.1, "2 train: RGB", "ResNet + STAA\n+ class-aware contrast", STAGE_COLOUR),
    "skel": (5.7, 2.2, 2.0, 1.1, "2 train: skeleton", "CTR-GCN, 1 to 4 streams\n+ class-aware contrast", STAGE_COLOUR),
    "scores": (8.0, 3.0, 1.6, 1.5, "3 scores", "logits of every\nsample, per branch\n(Parquet)", STAGE_COLOUR),
    "fuse": (10.1, 3.0, 1.7, 1.5, "4 fuse", "fitted on validation\nor out-of-fold scores;\ncross-validated;\napplied to test", STAGE_COLOUR),
    "report": (12.2, 3.0, 1.6, 1.5, "report", "accuracy with\nintervals, paired\ntests, plots", STAGE_COLOUR),
    "predict": (10.1, 0.9, 1.7, 1.1, "mmfc predict, live", "videos, skeleton files,\ncameras and streams,\neach person", AFTER_COLOUR),
    "export": (12.2, 0.9, 1.6, 1.1, "mmfc export", "ONNX graphs +\nfusion recipe", AFTER_COLOUR),
}
ARROWS = [
    ("data", "crops"), ("data", "poses"), ("poses", "crops"), ("crops", "rgb"), ("crops", "skel"),
    ("rgb", "scores"), ("skel", "scores"), ("scores", "fuse"), ("fuse", "report"),
    ("fuse", "predict"), ("fuse", "export"),
]


def edge(name: str, towards: str) -> tuple[float, float]:
    """The point where the line from box `name` to box `towards` leaves `name`."""
    x, y, w, h = BOXES[name][:4]
    tx, ty = BOXES[towards][:2]
    dx, dy = tx - x, ty - y
    scale = min(w / 2 / abs(dx) if dx else float("inf"), h / 2 / abs(dy) if dy else float("inf"))
    return x + dx * scale, y + dy * scale


def draw() -> None:
    fig, ax = plt.subplots(figsize=(13.5, 4.8), dpi=110)
    for x, y, w, h, title, detail, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                    facecolor=colour, edgecolor="#4a6a8a", linewidth=1.2))
        ax.text(x, y + h / 2 - 0.2, title, ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(x, y - 0.12, detail, ha="center", va="center", fontsize=8.5, linespacing=1.3)
    for start, end in ARROWS:
        ax.add_patch(FancyArrowPatch(edge(start, end), edge(end, start), arrowstyle="-|>",
                                     mutation_scale=14, color="#33475b", linewidth=1.2))
    ax.text(5.6, 0.55, "stages 0 to 4 and the report: make demo, make crops train scores fuse report\n"
            "each stage reads only the files of the stage before it",
            ha="center", va="center", fontsize=9, style="italic", color="#33475b")
    ax.set_xlim(-0.1, 13.1)
    ax.set_ylim(0.2, 4.5)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT)


if __name__ == "__main__":
    draw()
