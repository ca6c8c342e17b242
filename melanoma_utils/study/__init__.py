"""The study's experiments, above the training engine (:mod:`melanoma_utils.runs`) and below the reports: drivers
that train many runs and judge them: cross-validation and the ablation, paired contrasts, the backbone comparison
(Table 3), the selections of ``train``'s defaults (source weighting, the ceiling candidates, fine-tuning) and the
locked test part every selection input passes.

Modules: ``backbone_study``, ``ceiling``, ``contrasts``, ``experiments``, ``finetune``, ``locked``, ``plan``, ``selection``, ``variants``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""
