"""Training: the configuration, the loop (train_one_epoch, evaluate, main) and the torchrun process
group.
"""
