"""Environments bundled with envkit (``envkit.environments``).

Each module holds one environment. They are registered in gymnasium's registry by ``import
envkit`` through entry-point strings, so a module here is imported only when its env is made.
"""
