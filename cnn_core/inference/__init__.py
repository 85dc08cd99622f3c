"""The inference layer: what a trained model says about images.

`evaluate` (probabilities with test-time augmentation, loss and accuracy), `metrics` (torchmetrics-based
scores), `predict` (a checkpoint's card drives the preparation), `explain` (drawings, Grad-CAM, saliency,
Monte Carlo dropout, the trust hint), `graph` (torchinfo summaries, the autograd graph, feature maps) and
`export` (ONNX files with the input preparation inside). Imports only from `cnn_core.models`, `cnn_core.data`
and the base modules.
"""
