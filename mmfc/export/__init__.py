"""Exporting a trained run for use outside mmfc: each branch as an ONNX graph and the fitted
fusion as a recipe in a JSON manifest (`mmfc export`).

    graphs.py        a branch network -> an ONNX graph with one named input and `logits`;
                     running it in onnxruntime
    recipe.py        a FittedFusion -> its method, parameters and formula as plain JSON
    apply_fusion.py  the recipe applied with numpy alone: the consumer's side, copied into
                     every export so it needs nothing from mmfc
    preprocess.py    a clip's frames and keypoints -> both graphs' inputs, with numpy and
                     OpenCV alone, as stage 1 crops and stage 3 samples: copied likewise
    bundle.py        a trained run -> the export folder (with the settings preprocess.py reads
                     and the poses the run needs), with its parity check

onnx and onnxruntime are the optional extra `export` (pip install mmfc[export]); nothing here
imports them until an export runs.
"""
