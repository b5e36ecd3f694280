"""The library behind the commands that read artifacts: export a checkpoint, verify pairs with an
export, evaluate on a pair list.
"""
