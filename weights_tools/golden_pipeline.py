"""DDIM-inversion and extract golden cases (SatDiFuser's LDMExtractor code path)."""


def cases(mg):
    return {}
