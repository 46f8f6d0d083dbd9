"""Stage 0: poses for videos that come without skeletons (BlazePose on CPU, tracked people).

The API is `mmfc.poses.video_poses.estimate_poses(video_or_frames, models_dir, max_persons,
layout) -> PoseTracks`; the stage's output is a PYSKL pose pickle, read back with
mmfc.data.pose_pickle.
"""
