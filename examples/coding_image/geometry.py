"""A helper library that only exists inside the example's sandbox image."""

import math


def circle_area(radius: float) -> float:
    """The area of a circle."""
    return math.pi * radius * radius
