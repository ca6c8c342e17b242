"""melanoma_utils: the library behind the melanoma fusion study's notebooks and command line.

Modules, one concern each: ``config`` (paths), ``data`` (load + validate the SIIM-ISIC 2020 layouts),
``splits`` (patient-grouped splits), ``features`` (metadata encoding), ``demo`` (SYNTHETIC demo data),
``eda`` (statistics), ``plots`` (figures), ``transforms``, ``augment``, ``pipeline`` (tf.data),
``models``, ``training``, ``evaluation``, ``explain``, ``reporting`` and ``cli``.

Heavy dependencies (TensorFlow, Keras, shap) are imported only inside the modules that need them.
"""

__version__ = "0.1.0"
