"""The warning radiofm gives about inputs it reads but had to interpret."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["InputWarning"]


class InputWarning(AstropyUserWarning):
    """An input was read, but part of it was ambiguous or missing (the message says which
    part and what radiofm did with it): duplicate header keywords, catalogue rows without a
    position."""
