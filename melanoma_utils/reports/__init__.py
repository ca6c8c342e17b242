"""Explanation and plots: EDA statistics, figures, Grad-CAM/SHAP, the notebooks' report helpers, README
tables, the validation report writer and speed measurements.

Modules: ``benchmark``, ``doc_selection``, ``doc_tables``, ``doc_validation``, ``eda``, ``explain``, ``explain_agreement``, ``explain_plots``, ``claims``, ``model_plots``, ``paper``, ``plots``, ``readme``, ``doc_findings``, ``reporting``, ``shortcut_audit``, ``style``, ``validation``, ``validation_sections``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""
