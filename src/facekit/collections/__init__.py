"""Many faces at once: galleries of known people (:mod:`~facekit.collections.gallery`, over
its file :mod:`~facekit.collections.store` and its ranking :mod:`~facekit.collections.identification`),
clustering an unlabelled folder (:mod:`~facekit.collections.cluster`), faces in videos
(:mod:`~facekit.collections.video`) and embeddings in bulk to Parquet
(:mod:`~facekit.collections.parquet`).
"""
