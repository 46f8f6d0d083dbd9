"""Skeleton graphs for the GCN branch, built from the joint layouts (docs/method.md, section 4).

The partition follows CTR-GCN's "spatial" labelling: three subsets of the same joints, the
self-links (identity), the inward links (child -> parent, towards the centre joint) and the
outward links (parent -> child). Self-links sit in their own subset rather than being added to
the neighbour matrices, so the network weighs "me" and "my neighbours" separately.
"""

from __future__ import annotations

import numpy as np

from mmfc.data.layouts import Layout


def edge_matrix(links: list[tuple[int, int]], num_joints: int) -> np.ndarray:
    """A[dst, src] = 1 for each (src, dst) link, so that y_u = sum_v A[u, v] x_v gathers along it."""
    a = np.zeros((num_joints, num_joints), dtype=np.float32)
    for src, dst in links:
        a[dst, src] = 1.0
    return a


def row_normalise(a: np.ndarray) -> np.ndarray:
    """D^-1 A: each joint averages over the joints it gathers from; rows with none stay zero.

    CTR-GCN's normalize_digraph computes A D^-1 (column sums); the row form keeps every output
    joint on the scale of its inputs whatever its number of neighbours.
    """
    degree = a.sum(axis=1, keepdims=True)
    return np.divide(a, degree, out=np.zeros_like(a), where=degree > 0)


def adjacency(layout: Layout) -> np.ndarray:
    """[3, V, V] float32: identity, normalised inward, normalised outward."""
    v = layout.num_joints
    inward = list(layout.bones)  # (child, parent): information flows child -> parent
    outward = [(parent, child) for child, parent in inward]
    identity = np.eye(v, dtype=np.float32)
    return np.stack([
        identity,
        row_normalise(edge_matrix(inward, v)),
        row_normalise(edge_matrix(outward, v)),
    ])
