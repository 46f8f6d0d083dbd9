"""`mmfc predict`: new clips through a trained run, by the code of stages 1 to 4.

trained run (mmfc/run_folder.py: every branch stage 4 fused) -> skeletons.py (a skeleton file,
or the pose estimator) -> clips.py (one decoding pass and stage 1's crops of the clip or of each
window; a skeleton without video cropped as stage 1 stores one) -> predictor.py (stage 3's
logits of each branch, stage 4's fusion: score_clips) -> windows.py (segments of untrimmed
clips), outputs.py (tables, JSON, annotated video or skeleton drawing, pictures), batch.py
(folders and lists of inputs, resumable).
"""
