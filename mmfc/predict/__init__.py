"""`mmfc predict`: new videos through a trained run, by the code of stages 1 to 4.

trained run (mmfc/run_folder.py) -> skeletons.py (a skeleton file, or the pose estimator) ->
clips.py (one decoding pass, stage 1's crops of the clip or of each window) -> predictor.py
(stage 3's logits of each branch, stage 4's fusion) -> windows.py (segments of untrimmed videos),
outputs.py (tables, JSON, annotated video, pictures), batch.py (folders of videos, resumable).
"""
