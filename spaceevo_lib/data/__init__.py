"""Data layer: Imagenette arrays and the paper's reference artifacts, checked and fetched.

Everything is read from the data directory (``SPACEEVO_DATA_DIR``, default ``<project>/data``):

    <data>/imagenette/imagenette-{32,64}.npz    Imagenette, our ImageNet proxy
    <data>/spaceevo-reference/...               the paper's published LUTs and encodings (MIT)
    <data>/imagenet/{train,val}/<wnid>/...      ImageNet for the paper profile (user-supplied)

``spaceevo fetch imagenette`` / ``spaceevo fetch spaceevo-reference`` download the originals on
a machine with internet; otherwise point ``SPACEEVO_DATA_DIR`` at a copy.
"""

from .errors import CorruptDataError, DataError, MissingDataError
from .imagenet import load_imagenet
from .imagenette import ImagenetteArrays, ImagenetteDataset, load_imagenette, make_loaders
from .reference import (load_lut, load_reference_latency, load_search_result, lut_files,
                        reference_dir)

__all__ = [
    "CorruptDataError", "DataError", "MissingDataError",
    "ImagenetteArrays", "ImagenetteDataset", "load_imagenet", "load_imagenette", "make_loaders",
    "load_lut", "load_reference_latency", "load_search_result", "lut_files", "reference_dir",
]
