"""mmfc: fine-grained action recognition from RGB video and skeletons together."""

__version__ = "0.1.0"
