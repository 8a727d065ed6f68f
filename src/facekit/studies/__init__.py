"""Studies: things that run a pipeline over a dataset and report what they measured:
verification on labelled pairs (:mod:`~facekit.studies.evaluation`, pair files in
:mod:`~facekit.studies.pairs`); who a model works for, over labelled photos of
populations (:mod:`~facekit.studies.populations`): error rates per population
(:mod:`~facekit.studies.audit`), population profiles (:mod:`~facekit.studies.profiles`)
and person-against-person comparisons (:mod:`~facekit.studies.lookalikes`); and the
faithfulness of explanations (:mod:`~facekit.studies.faithfulness`).
"""
