"""Joint layouts, described once: bones, centre joint, left/right pairs, coordinates per joint
and the joints that align a 3D body (METHOD.md section 4). Their names are config.JointLayout."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str
    num_joints: int
    # (child, parent) pairs, 0-based; the centre joint has no bone of its own.
    bones: tuple[tuple[int, int], ...]
    center: int
    # Joints that swap under a horizontal flip, as (left, right) pairs.
    flip_pairs: tuple[tuple[int, int], ...]
    # Coordinates per joint of the skeletons recorded in it (NTU Kinect: 3D; COCO: 2D pixels).
    channels: int
    # 3D alignment (PYSKL's PreNormalize3D): ((spine base, spine), (right, left shoulder)); the
    # spine is turned to +z and the left -> right shoulder line to +x. None: no alignment.
    align_axes: tuple[tuple[int, int], tuple[int, int]] | None = None

    def flip_permutation(self) -> list[int]:
        perm = list(range(self.num_joints))
        for left, right in self.flip_pairs:
            perm[left], perm[right] = right, left
        return perm


_NTU_BONES_1BASED = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
)

# NTU-25 (Kinect v2), 1-based: 5-8 left arm, 9-12 right arm, 13-16 left leg, 17-20 right leg,
# 22-23 left hand tip/thumb, 24-25 right hand tip/thumb.
NTU25 = Layout(
    name="ntu25",
    num_joints=25,
    bones=tuple((a - 1, b - 1) for a, b in _NTU_BONES_1BASED),
    center=21 - 1,
    flip_pairs=tuple((a - 1, b - 1) for a, b in (
        (5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20), (22, 24), (23, 25),
    )),
    channels=3,
    align_axes=((0, 1), (8, 4)),
)

# COCO-17: 0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips,
# 13/14 knees, 15/16 ankles (odd = left, even = right).
COCO17 = Layout(
    name="coco17",
    num_joints=17,
    bones=(
        (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7), (10, 8),
        (11, 5), (12, 6), (13, 11), (14, 12), (15, 13), (16, 14),
    ),
    center=0,
    flip_pairs=tuple((left, left + 1) for left in range(1, 17, 2)),
    channels=2,
)

# Kinect v1 (20 joints), in the SDK's joint order as NW-UCLA stores it: 0 hip centre, 1 spine,
# 2 shoulder centre, 3 head, 4-7 left shoulder/elbow/wrist/hand, 8-11 the right arm, 12-15 left
# hip/knee/ankle/foot, 16-19 the right leg. Centred on the spine, as CTR-GCN's NW-UCLA feeder is.
KINECT20 = Layout(
    name="kinect20",
    num_joints=20,
    bones=(
        (1, 0), (2, 1), (3, 2), (4, 2), (5, 4), (6, 5), (7, 6), (8, 2), (9, 8), (10, 9), (11, 10),
        (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18),
    ),
    center=1,
    flip_pairs=tuple((left, left + 4) for left in (4, 5, 6, 7, 12, 13, 14, 15)),
    channels=3,
    align_axes=((0, 1), (8, 4)),
)

# Penn Action's 13 hand-annotated joints: 0 head, then left/right pairs of shoulders (1, 2),
# elbows (3, 4), wrists (5, 6), hips (7, 8), knees (9, 10), ankles (11, 12); 2D pixels.
PENN13 = Layout(
    name="penn13",
    num_joints=13,
    bones=((1, 0), (2, 0), (3, 1), (4, 2), (5, 3), (6, 4), (7, 1), (8, 2), (9, 7), (10, 8), (11, 9), (12, 10)),
    center=0,
    flip_pairs=tuple((left, left + 1) for left in range(1, 13, 2)),
    channels=2,
)

LAYOUTS = {layout.name: layout for layout in (NTU25, COCO17, KINECT20, PENN13)}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown joint layout {name!r}; known: {', '.join(LAYOUTS)}") from None
