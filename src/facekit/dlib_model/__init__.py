"""dlib's face-descriptor model, the part facekit-dlib and facekit-torch share: the
embedders' common base (:mod:`~facekit.dlib_model.descriptor`) and a reader of the
``.dat`` weights file (:mod:`~facekit.dlib_model.reader`). Neither imports dlib nor torch.
"""
