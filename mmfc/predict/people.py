"""Each person their own action: every person of a clip (a tracked person of a video, a body of
a skeleton file) scored alone, with the run's fitted fusion, in each window they are in.

    people = predict_people_video(run, Path("gym.mp4"), window=2.0, stride=0.5)
    for track, person in people.persons.items():
        person.segments     # [Segment(label, start, end, mean_probability, windows), ...]

Each window is cut into one clip per person seen on at least MIN_PRESENCE of its frames: the
skeleton branches read that person alone, the RGB branch reads the crop planned on that person
alone (stage 1's crop of a one-person skeleton), and the fitted fusion combines them
(predictor.score_clips), so a person's label is what the run says of a clip of them alone.

A class of two people (NTU's mutual actions: hugging, handshaking, pushing ...) cannot be seen
in one person alone: a run trained on them learnt both bodies together (data.max_bodies = 2).
Where the run has such classes (INTERACTIONS among its class names, or those named with
`--interaction`), each person is also scored together with the nearest other person of the
window, as one two-person clip the way the run was trained; when that pair's top fused class is
a two-person class, both persons carry it in that window (each naming the other, `partner`),
else each keeps their own label. So two people hugging are both labelled hugging, and one of
two people drinking side by side is labelled drinking.

`mmfc live` scores the windows of a stream one at a time with the same code (PeopleClips of one
window, score_people) and joins them (PeoplePrediction.then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mmfc.data.layouts import Layout
from mmfc.data.ntu_names import NTU120_CLASS_NAMES
from mmfc.data.sample import Skeleton
from mmfc.errors import DataError
from mmfc.metrics import log_softmax
from mmfc.predict.clips import CroppedClips, Decoded, Window
from mmfc.predict.predictor import PoseModels, WindowPoses, pass_video, plan_skeleton, plan_video, score_clips
from mmfc.predict.skeletons import SkeletonInput, pose_source_warning
from mmfc.predict.windows import Segment, find_segments
from mmfc.run_folder import TrainedRun

# NTU RGB+D's mutual actions (A050-A060, A106-A120): two people, each taking part.
INTERACTIONS = frozenset(NTU120_CLASS_NAMES[49:60] + NTU120_CLASS_NAMES[105:120])
# A person is scored in a window they are seen on at least this share of the frames of: the
# skeleton branch of one glimpsed for a few frames would read mostly absence.
MIN_PRESENCE = 0.5
# Frames a person may be unseen (the tracker carries their motion that long,
# mmfc.poses.tracking.MAX_EXTRAPOLATION) and still count as in the scene without a break.
BRIDGED_GAP = 10


def interaction_classes(run: TrainedRun, named: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The run's classes of two people: NTU's mutual actions among its class names, and `named`
    (--interaction). DataError naming the run for a name that is none of its classes."""
    for name in named:
        if name not in run.class_names:
            shown = ", ".join(run.class_names[:8]) + (", ..." if run.num_classes > 8 else "")
            raise DataError(run.workdir, f"--interaction {name!r}: not a class of this run ({shown})")
    return [c for c in run.class_names if c in INTERACTIONS or c in named]


def pairs_scored(run: TrainedRun, interactions: list[str]) -> str:
    """"" when pairs are scored (the run has two-person classes and its skeleton branches read
    two bodies), else why not, for the notes ("" too when the run has no such class)."""
    if not interactions or run.cfg.data.max_bodies >= 2 or not run.skeleton_branches:
        return ""
    return (f"the run's skeleton branches read one body (data.max_bodies = {run.cfg.data.max_bodies}): its two-person "
            f"classes ({', '.join(interactions)}) are each person's own label, not scored in pairs")


def presence(skeleton: Skeleton) -> np.ndarray:
    """Share of the clip's frames each person is seen on. -> float [M]"""
    seen = (skeleton.score > 0).any(axis=2).sum(axis=1)
    return seen / max(skeleton.total_frames, 1)


def persons_of(skeleton: Skeleton, rows: list[int]) -> Skeleton:
    """The persons `rows` of a skeleton alone, as a skeleton of the same clip."""
    return Skeleton(points=skeleton.points[rows], pixels=skeleton.pixels[rows], score=skeleton.score[rows],
                    frame_indices=skeleton.frame_indices, frame_size=skeleton.frame_size, layout=skeleton.layout,
                    total_frames=skeleton.total_frames)


def nearest_pairs(skeleton: Skeleton, rows: list[int]) -> list[tuple[int, int]]:
    """Each person of `rows` with the nearest other (mean distance between their joints' centres
    over the frames both are seen on), each pair once; none for people never seen together."""
    seen = skeleton.score > 0  # [M, T, V]
    centres = np.stack([np.where(seen[r][..., None], skeleton.pixels[r], 0).sum(axis=1)
                        / np.maximum(seen[r].sum(axis=1), 1)[:, None] for r in range(skeleton.num_persons)])
    on_frame = seen.any(axis=2)  # [M, T]
    pairs = set()
    for a in rows:
        best, nearest = np.inf, None
        for b in rows:
            both = on_frame[a] & on_frame[b]
            if b == a or not both.any():
                continue
            distance = float(np.linalg.norm(centres[a, both] - centres[b, both], axis=1).mean())
            if distance < best:
                best, nearest = distance, b
        if nearest is not None:
            pairs.add((min(a, nearest), max(a, nearest)))
    return sorted(pairs)


# How one clip of a window is cropped: (the clips it goes into, the window's number, its skeleton).
CropClip = Callable[[CroppedClips, int, Skeleton], None]


class PeopleClips:
    """The clips of each person (a key of one track) and, where pairs are scored, of each person
    with the nearest other (a key of two tracks, the lower first), over the windows of one input."""

    def __init__(self, run: TrainedRun, windows: list[Window], pairs: bool):
        self.run, self.windows, self.pairs = run, windows, pairs
        self.clips: dict[tuple[int, ...], CroppedClips] = {}

    def add(self, number: int, people: WindowPoses, crop: CropClip) -> None:
        """Window `number`: each person seen on at least MIN_PRESENCE of its frames cropped alone
        by `crop`, and with pairs, each with the nearest other such person."""
        skeleton = people.skeleton
        rows = [r for r, share in enumerate(presence(skeleton)) if share >= MIN_PRESENCE]
        for r in rows:
            crop(self._of((people.persons[r],)), number, persons_of(skeleton, [r]))
        if self.pairs:
            for a, b in nearest_pairs(skeleton, rows):
                if people.persons[b] < people.persons[a]:
                    a, b = b, a
                crop(self._of((people.persons[a], people.persons[b])), number, persons_of(skeleton, [a, b]))

    def _of(self, key: tuple[int, ...]) -> CroppedClips:
        if key not in self.clips:
            self.clips[key] = CroppedClips.empty(self.run.cfg, self.run.layout, self.windows)
        return self.clips[key]


@dataclass
class ClipScores:
    """The scored windows of one person, or of a pair."""

    windows: np.ndarray  # float64 [W, 2]: start and end, seconds
    boxes: np.ndarray  # float64 [W, 4]: x0, y0, x1, y1 of the crop, video pixels
    logits: dict[str, np.ndarray]  # branch -> float32 [W, K]
    fused: np.ndarray  # [W, K] class log-probabilities of the fitted fusion

    @property
    def probabilities(self) -> np.ndarray:
        return np.exp(log_softmax(self.fused))

    def then(self, later: ClipScores) -> ClipScores:
        return ClipScores(np.concatenate([self.windows, later.windows]), np.concatenate([self.boxes, later.boxes]),
                          {name: np.concatenate([logits, later.logits[name]]) for name, logits in self.logits.items()},
                          np.concatenate([self.fused, later.fused]))


@dataclass
class PersonTimeline:
    """One person's windows: their own scores, and what each window shows of them."""

    track: int  # the person's number: the tracker's slot + 1, or the skeleton file's body + 1
    alone: ClipScores
    # [W, K] class probabilities shown for each window: the pair's where the pair's top class is
    # a two-person class, else their own.
    shown: np.ndarray
    partner: np.ndarray  # int [W]: the person they share a two-person class with, 0 for none
    segments: list[Segment] = field(default_factory=list)

    def then(self, later: PersonTimeline) -> PersonTimeline:
        return PersonTimeline(self.track, self.alone.then(later.alone), np.concatenate([self.shown, later.shown]),
                              np.concatenate([self.partner, later.partner]))

    def label(self, w: int, class_names: list[str]) -> tuple[str, float, int]:
        """Window w's shown class, its probability and the partner (0: none)."""
        top = int(self.shown[w].argmax())
        return class_names[top], float(self.shown[w, top]), int(self.partner[w])


@dataclass
class PeoplePrediction:
    """Every person of one input, each with their own timeline."""

    input: str
    entry: str | None
    fps: float
    frames: int
    class_names: list[str]
    branches: list[str]  # those that scored the clips
    fusion: str
    skeleton: str  # where the skeleton came from
    interactions: list[str]  # the run's two-person classes
    persons: dict[int, PersonTimeline]  # by track, in order
    pairs: dict[tuple[int, int], ClipScores]  # the two-person clips scored
    # Frames [start, stop) each person is in (gaps up to BRIDGED_GAP frames bridged).
    spans: dict[int, list[tuple[int, int]]]
    seen: dict[int, int]  # frames each person is seen on
    notes: list[str] = field(default_factory=list)
    warning: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.entry).name if self.entry is not None else Path(self.input).stem

    def then(self, later: PeoplePrediction) -> PeoplePrediction:
        """This prediction followed by one of later windows of the same input (a live stream's,
        which counts its frames and each person's spans itself: this one's are kept)."""
        persons = dict(self.persons)
        for track, timeline in later.persons.items():
            persons[track] = persons[track].then(timeline) if track in persons else timeline
        pairs = dict(self.pairs)
        for key, scores in later.pairs.items():
            pairs[key] = pairs[key].then(scores) if key in pairs else scores
        timings = {step: self.timings.get(step, 0.0) + later.timings.get(step, 0.0)
                   for step in {**self.timings, **later.timings}}
        return replace(self, persons=dict(sorted(persons.items())), pairs=pairs,
                       notes=list(dict.fromkeys(self.notes + later.notes)), warning=self.warning or later.warning,
                       timings=timings)

    def with_segments(self, threshold: float) -> PeoplePrediction:
        """Each person's segments: where one shown class stays on top above `threshold`."""
        for timeline in self.persons.values():
            timeline.segments = find_segments(timeline.alone.windows, timeline.shown, self.class_names, threshold)
        return self


def score_people(run: TrainedRun, people: PeopleClips, found: SkeletonInput, interactions: list[str], fps: float
                 ) -> tuple[dict[int, PersonTimeline], dict[tuple[int, int], ClipScores], list[str], str, dict]:
    """Every clip of `people` scored and fused (predictor.score_clips), its windows in seconds of
    `fps`, and the pair rule applied (the module docstring). -> (timelines by track, pair scores,
    the branches that scored them, the fusion method, seconds per branch and fusion)"""
    scored: dict[tuple[int, ...], tuple[list[int], ClipScores]] = {}
    branches, method, seconds = list(run.branches), run.fusion_method, {}
    for key, clips in sorted(people.clips.items()):
        numbers = sorted(clips.positions)
        if not numbers:
            continue
        result = score_clips(run, clips.store, [clips.positions[n] for n in numbers], found)
        branches, method = list(result.logits), result.fusion
        for step, took in result.seconds.items():
            seconds[step] = seconds.get(step, 0.0) + took
        windows = np.array([people.windows[n].seconds(fps) for n in numbers], dtype=np.float64)
        boxes = np.array([clips.boxes[n] for n in numbers], dtype=np.float64)
        scored[key] = (numbers, ClipScores(windows, boxes, result.logits, result.fused))
    wanted = {run.class_names.index(c) for c in interactions}
    probabilities = {key: (numbers, scores.probabilities) for key, (numbers, scores) in scored.items()}
    timelines = {}
    for key, (numbers, alone) in scored.items():
        if len(key) == 1:
            shown, partner = carry_two_person_classes(key[0], probabilities, wanted)
            timelines[key[0]] = PersonTimeline(key[0], alone, shown, partner)
    pairs = {key: scores for key, (_, scores) in scored.items() if len(key) == 2}
    return timelines, pairs, branches, method, seconds


def carry_two_person_classes(track: int, probabilities: dict[tuple[int, ...], tuple[list[int], np.ndarray]],
                             two_person: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """The pair rule for one person. `probabilities`: by clip key ((track,) alone, (a, b) a pair),
    the window numbers scored and their fused class probabilities [W, K]. Each of the person's
    windows shows their own probabilities, or a pair's where the pair's top class is one of
    `two_person` (the most probable such pair). -> (shown [W, K], partner [W], 0 for none)"""
    numbers, alone = probabilities[(track,)]
    row_of = {number: row for row, number in enumerate(numbers)}
    shown, partner = alone.copy(), np.zeros(len(numbers), dtype=np.int64)
    carried = np.zeros(len(numbers))  # the probability of the two-person class shown
    for pair, (pair_numbers, together) in probabilities.items():
        if len(pair) != 2 or track not in pair:
            continue
        for number, p in zip(pair_numbers, together):
            top, row = int(p.argmax()), row_of.get(number)
            if row is not None and top in two_person and p[top] > carried[row]:
                shown[row], partner[row], carried[row] = p, pair[0] + pair[1] - track, p[top]
    return shown, partner


def frame_spans(seen: np.ndarray, frame_indices: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of the frames a person is seen on (frame numbers `frame_indices` of
    `seen`), a gap of up to BRIDGED_GAP frames bridged."""
    spans: list[list[int]] = []
    for t in frame_indices[seen].tolist():
        if spans and t - spans[-1][1] <= BRIDGED_GAP:
            spans[-1][1] = t + 1
        else:
            spans.append([t, t + 1])
    return [(a, b) for a, b in spans]


def people_in(skeleton: Skeleton, persons: list[int], frames: int) -> tuple[dict[int, list[tuple[int, int]]], dict[int, int]]:
    """Each person's frame spans (in the `frames` of the video the skeleton is of) and the
    frames they are seen on."""
    on_frame = (skeleton.score > 0).any(axis=2)  # [M, T]
    scale = frames / max(skeleton.total_frames, 1)  # the skeleton's clock may differ a little from the video's
    spans = {track: [(round(a * scale), round(b * scale)) for a, b in frame_spans(on_frame[m], skeleton.frame_indices)]
             for m, track in enumerate(persons)}
    return spans, {track: int(on_frame[m].sum()) for m, track in enumerate(persons)}


def people_prediction(run: TrainedRun, given: str, entry: str | None, fps: float, frames: int, people: PeopleClips,
                      found: SkeletonInput, persons: list[int], interactions: list[str], notes: list[str],
                      timings: dict[str, float]) -> PeoplePrediction | None:
    """The clips of `people` scored (score_people), with each person's spans in `found`, the
    skeleton of the whole input (its rows' persons: `persons`); None when nobody was seen long
    enough to be scored."""
    timelines, pairs, branches, method, seconds = score_people(run, people, found, interactions, fps)
    if not timelines:
        return None
    spans, seen = people_in(found.skeleton, persons, frames)
    return PeoplePrediction(
        input=given, entry=entry, fps=fps, frames=frames, class_names=run.class_names, branches=branches,
        fusion=method, skeleton=found.origin, interactions=interactions, persons=dict(sorted(timelines.items())),
        pairs=pairs, spans=spans, seen=seen, notes=notes, warning=pose_source_warning(run.pose_source, found),
        timings={**timings, **seconds},
    )


def clip_cropper(run: TrainedRun, name: str, decoded: Decoded | None, skeleton_path: Path | None,
                 layout: Layout) -> CropClip:
    """How each person's clip is cropped: from the kept frames of the one pass over the video
    (stage 1's crop of a video), or, for a run without a video branch, as stage 1 stores a
    skeleton alone, no frame needed (the skeleton branches read the same normalised sequence
    either way)."""
    if not run.video_branches:
        return lambda clips, number, skeleton: clips.crop_alone(run.cfg, number, Path(name).stem, skeleton,
                                                                 skeleton_path or Path(name))
    return lambda clips, number, skeleton: clips.crop(run.cfg, number, Path(name), skeleton, decoded,
                                                      skeleton_path, layout)


def _nobody(where: str, windows: list[Window]) -> DataError:
    return DataError(where, f"nobody is seen on at least {MIN_PRESENCE:.0%} of the frames of any "
                            f"{'window' if len(windows) > 1 else 'clip'}: nothing to score")


def predict_people_video(run: TrainedRun, video: Path, skeleton_file: Path | None = None, window: float | None = None,
                         stride: float | None = None, poses: PoseModels | None = None, interactions: list[str] = (),
                         preview_width: int = 0, preview_every: int = 1
                         ) -> tuple[PeoplePrediction, Decoded, SkeletonInput, list[int]]:
    """Predict each person of a video (tracked by the pose estimator, or each body of its
    skeleton file) in each window with `window` seconds, else over the whole video.
    `interactions`: the run's two-person classes (interaction_classes). DataError as
    predictor.pass_video says, and when nobody is seen long enough to be scored.
    -> (the prediction, the pass's frames, the whole skeleton, each of its rows' person)"""
    info, windows = plan_video(run, video, skeleton_file, window, stride)
    declined = pairs_scored(run, list(interactions))
    people = PeopleClips(run, windows, bool(interactions) and not declined)

    def on_window(number: int, decoded: Decoded, seen: WindowPoses) -> None:
        people.add(number, seen, clip_cropper(run, str(info.path), decoded, skeleton_file, seen.layout))

    done = pass_video(run, info, windows, skeleton_file, poses, on_window, lambda number, reason: None,
                      preview_width, preview_every)
    notes = [note for note in (done.told, done.found.note, declined) if note]
    prediction = people_prediction(run, str(video), None, done.fps, done.decoded.frames, people, done.found,
                                   done.persons, list(interactions), notes, done.timings)
    if prediction is None:
        raise _nobody(str(video), windows)
    return prediction, done.decoded, done.found, done.persons


def predict_people_skeleton(run: TrainedRun, path: Path, entry: str | None = None, window: float | None = None,
                            stride: float | None = None, interactions: list[str] = ()
                            ) -> tuple[PeoplePrediction, SkeletonInput, list[int]]:
    """predict_people_video of a skeleton file without a video (each of its bodies a person), as
    predictor.plan_skeleton reads it."""
    done = plan_skeleton(run, path, entry, window, stride)
    declined = pairs_scored(run, list(interactions))
    people = PeopleClips(run, done.windows, bool(interactions) and not declined)
    crop = clip_cropper(run, done.name, None, Path(path), run.layout)
    started = time.perf_counter()
    for number, seen in done.people():
        if not isinstance(seen, str):
            people.add(number, seen, crop)
    done.timings["crop"] = time.perf_counter() - started
    notes = [note for note in (done.found.note, declined) if note]
    frames = done.found.skeleton.total_frames
    prediction = people_prediction(run, str(path), entry, done.fps, frames, people, done.found, done.persons,
                                   list(interactions), notes, done.timings)
    if prediction is None:
        raise _nobody(done.where, done.windows)
    return prediction, done.found, done.persons


def score_window(run: TrainedRun, window: Window, seen: WindowPoses, found: SkeletonInput, decoded: Decoded | None,
                 name: str, interactions: list[str], fps: float) -> PeoplePrediction | None:
    """One window of a stream (frames [start, stop) of it), its people `seen` (`found`, their
    skeleton as the run reads it), each scored alone and in pairs as predict_people_video scores
    a window; `decoded` holds the frames its crops need (None for a run without a video branch).
    None when nobody is seen long enough to be scored."""
    declined = pairs_scored(run, interactions)
    people = PeopleClips(run, [window], bool(interactions) and not declined)
    people.add(0, seen, clip_cropper(run, name, decoded, None, seen.layout))
    notes = [note for note in (found.note, declined) if note]
    return people_prediction(run, name, None, fps, window.stop - window.start, people, found, seen.persons,
                             interactions, notes, {})
