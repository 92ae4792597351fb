"""Data layer: Imagenette arrays and the paper's reference artifacts, checked and fetched.

Everything is read from the data directory (``SPACEEVO_DATA_DIR``, default ``<project>/data``):

    <data>/imagenette/imagenette-{32,64}.npz    Imagenette, our ImageNet proxy
    <data>/spaceevo-reference/...               the paper's published LUTs and encodings (MIT)
    <data>/imagenet/{train,val}/<wnid>/...      ImageNet for the paper profile (user-supplied)

and the paper's own values (``configs/paper_reference.yaml``, :mod:`.paper`: the only typed
numbers of the book). Also here: the one ImageNet normalisation (:func:`normalize_images`) and
the real images every latency job is calibrated with (:func:`calibration_images`).

``spaceevo fetch imagenette`` / ``spaceevo fetch spaceevo-reference`` download the originals on
a machine with internet; otherwise point ``SPACEEVO_DATA_DIR`` at a copy.
"""

from .errors import CorruptDataError, DataError, MissingDataError
from .imagenet import load_imagenet
from .imagenette import (ImagenetteArrays, ImagenetteDataset, calibration_images, load_imagenette,
                         make_loaders, normalize_images)
from .paper import (paper_claims, paper_code_release, paper_reference, paper_setup, paper_source,
                    paper_table1, paper_value)
from .reference import (load_reference_latency, load_search_result, lut_files, lut_path,
                        reference_dir)

__all__ = [
    "CorruptDataError", "DataError", "MissingDataError",
    "ImagenetteArrays", "ImagenetteDataset", "calibration_images", "normalize_images",
    "load_imagenet", "load_imagenette", "make_loaders",
    "paper_claims", "paper_code_release", "paper_reference", "paper_setup", "paper_source",
    "paper_table1", "paper_value",
    "load_reference_latency", "load_search_result", "lut_files", "lut_path", "reference_dir",
]
