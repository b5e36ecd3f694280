"""Training and evaluation data: LFW located, extracted and decoded; the synthetic face set;
augmentation and sampling.
"""
