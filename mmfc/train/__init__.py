"""Stage 2: training one modality (RGB or skeleton) from the stage-1 crop store."""
