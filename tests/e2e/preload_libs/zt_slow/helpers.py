"""A submodule of zt_slow."""


def double(value: int) -> int:
    return value * 2
