"""Face-embedding models: reading the weights we ship with and converting them to ONNX.

Inference runs on ONNX Runtime everywhere (CPU in tests, CUDA or TensorRT on GPUs), so every
model reaches the pipeline as an ``.onnx`` graph plus a JSON model card saying how to feed it
(chip template, input size, colour order, normalisation) and how to read its output.
"""
