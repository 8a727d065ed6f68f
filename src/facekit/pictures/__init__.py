"""Pictures: comparison cards and heatmap overlays (:mod:`~facekit.pictures.cards`), plots
of measurements (:mod:`~facekit.pictures.plots`).

Pictures draw arrays and numbers. They know the result types by annotation only, so the
result types can offer ``card()`` and notebook views without an import circle.
"""
