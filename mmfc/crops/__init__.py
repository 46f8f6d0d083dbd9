"""Stage 1: skeleton-guided crops and normalised skeletons in zarr shards, and their reader."""

from mmfc.crops.store import CropStore, open_crops

__all__ = ["CropStore", "open_crops"]
