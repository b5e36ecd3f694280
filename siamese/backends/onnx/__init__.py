"""ONNX: the writer (one shared weights file), ONNX Runtime's INT8 quantizer, and the ONNX Runtime
runner (CPU, CUDA, TensorRT).
"""
