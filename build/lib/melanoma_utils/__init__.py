"""melanoma_utils: the library behind the melanoma fusion study's notebooks and command line.

Eight subpackages, one per layer; a module imports only from its own folder or the ones before it in this list:
``config``, ``atomic``, ``versions``, ``progress``, ``lazy`` (foundation: paths, atomic writes, package versions, terminal
progress, lazy re-exports) < ``data`` (the ISIC table, image files, splits, external sources, the demo set, ``make
data``) < ``pipeline`` (transforms, augmentation, tf.data feeds) < ``evaluation`` (metrics, calibration, clinical
reports) < ``models`` (the two-input model, backbones, embeddings, metadata features, ``TrainConfig``) < ``runs``
(the training engine, run folders, ensembles, export, and the older experiment drivers) < ``study`` (experiments that
choose defaults: the fine-tuning selection) < ``reports`` (EDA, figures, explanations, report writers) < ``cli`` (the
command line and ``reproduce``). Each subpackage's docstring lists its modules; ``tests/test_layers.py`` enforces
the order.

Heavy dependencies (TensorFlow, Keras, shap) are imported only inside the modules that need them.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info/warning lines drown real output

__version__ = "0.1.0"
