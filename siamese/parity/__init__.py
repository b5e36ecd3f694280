"""Whether two runtimes agree: the comparator (tolerances, decisions, accuracy) and the inputs
parity runs on.
"""
