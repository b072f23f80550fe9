"""The data layer: sources, files, splits and preprocessing (NumPy only).

``load_data(cfg, seed, base_dir)`` turns the ``data:`` config into a ``DataBundle`` of
``Split``s; ``read_inputs``, ``read_labelled`` and ``labels_from_indices`` serve saved
models; ``fetch`` downloads MNIST and Fashion-MNIST.
"""

from nnback.data.fetch import fetch
from nnback.data.inputs import read_inputs, read_labelled
from nnback.data.labels import labels_from_indices
from nnback.data.load import DataBundle, DataMeta, Split, load_data
from nnback.data.preprocess import Preprocessor

__all__ = ["DataBundle", "DataMeta", "Preprocessor", "Split", "fetch", "labels_from_indices",
           "load_data", "read_inputs", "read_labelled"]
