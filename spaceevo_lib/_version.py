"""The library version: recorded in every run folder and in every cache and job key."""

__version__ = "0.2.0"
