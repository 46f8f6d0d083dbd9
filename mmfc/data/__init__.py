"""Data sources: NTU RGB+D raw releases, PYSKL pose pickles, videos, the synthetic dataset."""
