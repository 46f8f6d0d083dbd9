"""The out-of-fold stage: every fused branch trained again on folds of whole groups of the
training side, so that stage 4 can fit the fusion on every training clip's out-of-fold score."""
