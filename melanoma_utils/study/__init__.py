"""The study's experiments, above the training engine (:mod:`melanoma_utils.runs`) and below the reports: drivers
that train many runs and judge them (today: the fine-tuning selection of ``train``'s default; the older drivers still
live in ``runs`` and move here as they are next touched).

Modules: ``finetune``, ``locked``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""
