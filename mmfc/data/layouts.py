"""Joint layouts as data (docs/method.md, section 4): the joints by name, the bones between them (the
skeleton branch's graph, and its bone vectors), the centre joint, the left/right pairs a flip
swaps, 2D or 3D, and the joints that align a 3D body.

The built-in layouts are `LAYOUTS`, named by config.JointLayout; a pipeline may declare one of
its own in `[data.declared_layout]`, and `layout_of` gives whichever data.layout names. Every
layout, built-in or declared, is checked by the same rules (config.DeclaredLayout: a tree of
bones over named joints, pairs that mirror bones onto bones). A layout travels whole with what
is made from it (`to_dict` / `from_dict`): the crop store's index carries it, so a run made with
a declared layout reads back without the pipeline that declared it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmfc.config import ConfigError, DataConfig, DeclaredLayout, load_layout


@dataclass(frozen=True)
class Layout:
    name: str
    joints: tuple[str, ...]
    # (child, parent) index pairs, the parent nearer the centre; the centre has no bone of its own.
    bones: tuple[tuple[int, int], ...]
    center: int
    # Joints that swap under a horizontal flip, as (left, right) pairs.
    flip_pairs: tuple[tuple[int, int], ...]
    # Coordinates per joint of the skeletons recorded in it (Kinect: 3D metres; 2D: pixels).
    channels: int
    # 3D alignment (PYSKL's PreNormalize3D): ((spine base, spine), (right, left shoulder)); the
    # spine is turned to +z and the left -> right shoulder line to +x. None: no alignment.
    align_axes: tuple[tuple[int, int], tuple[int, int]] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def flip_permutation(self) -> list[int]:
        perm = list(range(self.num_joints))
        for left, right in self.flip_pairs:
            perm[left], perm[right] = right, left
        return perm

    def parents(self) -> list[int]:
        """Each joint's parent, the centre its own: a bone vector is joint - parent."""
        parent = list(range(self.num_joints))
        for child, par in self.bones:
            parent[child] = par
        return parent

    def joint(self, name: str, key: str) -> int:
        """The index of the joint called `name`; ConfigError naming the setting `key` otherwise."""
        if name not in self.joints:
            raise ConfigError(f"{key} = {name!r} is not a joint of layout {self.name!r}; its joints: {', '.join(self.joints)}")
        return self.joints.index(name)

    def to_dict(self) -> dict:
        """The layout by joint names, as a pipeline declares one (config.DeclaredLayout)."""

        def named(pairs) -> list[list[str]]:
            return [[self.joints[a], self.joints[b]] for a, b in pairs]

        return {
            "name": self.name,
            "joints": list(self.joints),
            "bones": named(self.bones),
            "center": self.joints[self.center],
            "pairs": named(self.flip_pairs),
            "channels": self.channels,
            "align": [self.joints[j] for axis in self.align_axes for j in axis] if self.align_axes else [],
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "layout") -> Layout:
        """to_dict's inverse, checked as a declared layout is (ConfigError naming `where`)."""
        return from_declared(load_layout(data, where))


def from_declared(declared: DeclaredLayout) -> Layout:
    """A checked declaration (config.DeclaredLayout) as joint indices, each bone pointing from the
    joint farther from the centre to the nearer one."""
    index = {name: i for i, name in enumerate(declared.joints)}
    parent = declared.parents()
    bones = tuple(
        (index[a], index[b]) if parent[a] == b else (index[b], index[a]) for a, b in declared.bones
    )
    align = [index[name] for name in declared.align]
    return Layout(
        name=declared.name,
        joints=tuple(declared.joints),
        bones=bones,
        center=index[declared.center],
        flip_pairs=tuple((index[left], index[right]) for left, right in declared.pairs),
        channels=declared.channels,
        align_axes=((align[0], align[1]), (align[2], align[3])) if align else None,
    )


def _built_in(name: str, joints: tuple[str, ...], bones, center: int, pairs, channels: int, align=()) -> Layout:
    """A built-in layout written with joint indices, checked by the rules a declared one meets."""
    return Layout.from_dict({
        "name": name,
        "joints": list(joints),
        "bones": [[joints[a], joints[b]] for a, b in bones],
        "center": joints[center],
        "pairs": [[joints[a], joints[b]] for a, b in pairs],
        "channels": channels,
        "align": [joints[j] for j in align],
    }, f"built-in layout {name!r}")


# Kinect's limbs, v1 and v2 alike, in the SDK's order: left arm, right arm, left leg, right leg.
_KINECT_LIMBS = tuple(
    f"{joint}_{side}" for limb in (("shoulder", "elbow", "wrist", "hand"), ("hip", "knee", "ankle", "foot"))
    for side in ("left", "right") for joint in limb
)

# NTU-25 (Kinect v2), in the SDK's joint order. Bones 1-based as docs/method.md, section 4, lists them.
NTU25 = _built_in(
    "ntu25",
    ("spine_base", "spine_mid", "neck", "head", *_KINECT_LIMBS,
     "spine_shoulder", "hand_tip_left", "thumb_left", "hand_tip_right", "thumb_right"),
    bones=[(a - 1, b - 1) for a, b in (
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    )],
    center=21 - 1,
    pairs=[(a - 1, b - 1) for a, b in (
        (5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20), (22, 24), (23, 25),
    )],
    channels=3,
    align=(0, 1, 8, 4),
)

# COCO-17: odd indices left, even right.
COCO17 = _built_in(
    "coco17",
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
     "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
     "left_knee", "right_knee", "left_ankle", "right_ankle"),
    bones=[(1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7), (10, 8),
           (11, 5), (12, 6), (13, 11), (14, 12), (15, 13), (16, 14)],
    center=0,
    pairs=[(left, left + 1) for left in range(1, 17, 2)],
    channels=2,
)

# Kinect v1 (NW-UCLA, UTD-MHAD, MSR Action3D), in the SDK's joint order; the graph hangs from
# the shoulder centre, as CTR-GCN's graph/ucla.py connects it.
KINECT20 = _built_in(
    "kinect20",
    ("hip_center", "spine", "shoulder_center", "head", *_KINECT_LIMBS),
    bones=[(0, 1), (1, 2), (3, 2), (4, 2), (5, 4), (6, 5), (7, 6), (8, 2), (9, 8), (10, 9), (11, 10),
           (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18)],
    center=2,
    pairs=[(left, left + 4) for left in (4, 5, 6, 7, 12, 13, 14, 15)],
    channels=3,
    align=(0, 1, 8, 4),
)

# BlazePose's 33 landmarks (MediaPipe Pose), all of them, as stage 0 can keep them; left is the
# person's own left. MediaPipe draws loops (face, torso, hands, feet); the tree here keeps the
# shape COCO-17 has: head and shoulders hang from the nose, hips from the shoulders, each finger
# and the heel and toe from their wrist or ankle.
MEDIAPIPE33 = _built_in(
    "mediapipe33",
    ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
     "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
     "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
     "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
     "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
     "right_heel", "left_foot_index", "right_foot_index"),
    bones=[(1, 0), (2, 1), (3, 2), (7, 3), (4, 0), (5, 4), (6, 5), (8, 6), (9, 0), (10, 0),
           (11, 0), (12, 0), (13, 11), (14, 12), (15, 13), (16, 14), (17, 15), (18, 16), (19, 15),
           (20, 16), (21, 15), (22, 16), (23, 11), (24, 12), (25, 23), (26, 24), (27, 25), (28, 26),
           (29, 27), (30, 28), (31, 27), (32, 28)],
    center=0,
    pairs=[(1, 4), (2, 5), (3, 6), (7, 8), *((left, left + 1) for left in range(9, 33, 2))],
    channels=2,
)

# Penn Action's 13 hand-annotated joints, 2D.
PENN13 = _built_in(
    "penn13",
    ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
     "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
    bones=[(1, 0), (2, 0), (3, 1), (4, 2), (5, 3), (6, 4), (7, 1), (8, 2), (9, 7), (10, 8),
           (11, 9), (12, 10)],
    center=0,
    pairs=[(left, left + 1) for left in range(1, 13, 2)],
    channels=2,
)

# OpenPose BODY_25 (FSD-10, and OpenPose's own output), 2D; its 24 limbs hang from the neck.
OPENPOSE25 = _built_in(
    "openpose25",
    ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
     "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
     "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe",
     "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"),
    bones=[(0, 1), (2, 1), (5, 1), (8, 1), (3, 2), (4, 3), (6, 5), (7, 6), (9, 8), (10, 9), (11, 10),
           (12, 8), (13, 12), (14, 13), (15, 0), (16, 0), (17, 15), (18, 16), (19, 14), (20, 19),
           (21, 14), (22, 11), (23, 22), (24, 11)],
    center=1,
    pairs=[(5, 2), (6, 3), (7, 4), (12, 9), (13, 10), (14, 11), (16, 15), (18, 17), (19, 22), (20, 23),
           (21, 24)],
    channels=2,
)

LAYOUTS = {layout.name: layout for layout in (NTU25, COCO17, KINECT20, MEDIAPIPE33, PENN13, OPENPOSE25)}


def get_layout(name: str) -> Layout:
    """A built-in layout by name."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown joint layout {name!r}; known: {', '.join(LAYOUTS)}") from None


def layout_of(data: DataConfig) -> Layout:
    """The layout data.layout names: the declared one, or a built-in one."""
    if data.declared_layout.name and data.layout == data.declared_layout.name:
        return from_declared(data.declared_layout)
    return get_layout(data.layout)


def stored_layout(value: str | dict, where: str) -> Layout:
    """A layout as a crop store or a checkpoint keeps it: whole (to_dict), or, written before
    layouts were kept whole, the name of a built-in one. ConfigError naming `where` otherwise."""
    if isinstance(value, str):
        if value not in LAYOUTS:
            raise ConfigError(f"{where}: unknown joint layout {value!r}; known: {', '.join(LAYOUTS)}")
        return LAYOUTS[value]
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: a joint layout is a table of joints, bones, centre and pairs, got {value!r}")
    return Layout.from_dict(value, where)
