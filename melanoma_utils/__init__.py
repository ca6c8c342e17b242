"""melanoma_utils: the library behind the melanoma fusion study's notebooks and command line.

Modules, one concern each (layered, no cycles): ``config`` (paths), ``data`` (load + validate the SIIM-ISIC
2020 metadata layouts), ``images`` (image files: checks, decode, resize), ``splits`` (patient-grouped splits),
``features`` (metadata encoding), ``demo`` (SYNTHETIC demo data), ``eda`` (statistics), ``plots`` (figures),
``transforms``, ``augment``, ``pipeline`` (tf.data and the NumPy feed), ``efficientnet_lite`` (the offline
pretrained backbone), ``embeddings`` (cached frozen-backbone embeddings), ``backbones``/``models`` (the
two-input model), ``runs`` (TrainConfig, Run), ``runfolder`` (run folder lifecycle), ``training`` (fitting),
``experiments`` (ablation, backbone comparison), ``evaluation`` (metrics), ``explain``, ``atomic`` (atomic
writes), ``versions``, ``reporting``, ``reproduce`` (papermill) and ``cli``.

Heavy dependencies (TensorFlow, Keras, shap) are imported only inside the modules that need them.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info/warning lines drown real output

__version__ = "0.1.0"
