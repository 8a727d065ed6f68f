"""Studies: things that run a pipeline over a dataset and report what they measured:
verification on labelled pairs (:mod:`~facekit.studies.evaluation`), fairness across
groups of people (:mod:`~facekit.studies.populations`) and the faithfulness of
explanations (:mod:`~facekit.studies.faithfulness`).
"""
