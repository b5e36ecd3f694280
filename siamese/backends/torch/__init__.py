"""PyTorch: the TorchScript, torch.export and AOTInductor writers, and the eager, compiled and
loaded-artifact runners.
"""
