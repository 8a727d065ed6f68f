"""Scores and what they mean: the metric of an embedder, FACE01's percentage, the
measures of a verifier (ROC, EER, TAR at FAR, thresholds, ECE, Brier) and calibration.

Everything here is numbers in, numbers out (numpy only), except that
:func:`~facekit.scoring.calibration.load_calibration` looks bundled calibrations up by name
in the plugin registry.
"""
