"""A `.seg.nrrd` written by hand, byte by byte, as another tool (or a broken or hostile one) might write it: the
reader's tests build the files they read with it, never with the project's own writer."""

from __future__ import annotations

import bz2
import gzip

import numpy as np


def segment_keys(segments) -> str:
    """Header lines for segments given as (name, label value, layer) or dicts of the keys to write."""
    lines = []
    for n, segment in enumerate(segments):
        if isinstance(segment, tuple):
            name, value, layer = segment
            segment = {"ID": f"Segment_{n + 1}", "Name": name, "LabelValue": value, "Layer": layer}
        lines += [f"Segment{n}_{key}:={value}" for key, value in segment.items()]
    return "".join(line + "\n" for line in lines)


def hand_made(path, voxels_ijk: np.ndarray | None, segments=(("liver", 1, 0), ("spleen", 2, 0)),
              nrrd_type="unsigned char", encoding="gzip", endian="little", extra="", sizes=None, payload=None):
    """A .seg.nrrd written as another tool might write it; ``voxels_ijk`` is (I, J, K) or (layers, I, J, K).
    ``payload``: the bytes after the header as they are (already encoded), in place of ``voxels_ijk``'s (then None);
    ``sizes`` the grid the header declares, if not ``voxels_ijk``'s. Directions (0.5, 0, 0), (0, -2, 0), (0, 0, 3)
    in LPS from (10, 20, 30)."""
    sizes = voxels_ijk.shape if sizes is None else sizes
    if payload is None:
        payload = np.asarray(voxels_ijk).T.astype(np.asarray(voxels_ijk).dtype.newbyteorder(
            ">" if endian == "big" else "<")).tobytes()  # no endian line: little, NRRD's usual order
        payload = {"gzip": gzip.compress, "gz": gzip.compress, "bzip2": bz2.compress, "bz2": bz2.compress}.get(
            encoding, lambda data: data)(payload)
    dimension = len(sizes)
    directions = ("none " if dimension == 4 else "") + "(0.5,0,0) (0,-2,0) (0,0,3)"
    header = (f"NRRD0004\ntype: {nrrd_type}\ndimension: {dimension}\nspace: left-posterior-superior\n"
              f"sizes: {' '.join(map(str, sizes))}\nspace directions: {directions}\n"
              f"kinds: {'list ' if dimension == 4 else ''}domain domain domain\nencoding: {encoding}\n"
              f"{f'endian: {endian}' + chr(10) if endian else ''}space origin: (10,20,30)\n{extra}"
              f"{segment_keys(segments)}\n")
    path.write_bytes(header.encode() + payload)
    return path
