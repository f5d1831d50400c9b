"""Label vocabularies and the sample record shared by every generator."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

IMAGE_TYPES = ("Dealer", "Stock", "Placeholder")
COLORS = (
    "Black",
    "Blue",
    "Brown",
    "Burgundy",
    "Green",
    "Grey",
    "Orange",
    "Pink",
    "Purple",
    "Red",
    "White",
    "Yellow",
)
INTENT_LABELS = (
    "No Shopping Intent",
    "Fashion & Style",
    "Home & Garden",
    "Tools, Vehicles, Electronics & Appliances",
)
SENSITIVE_LABELS = ("not sensitive", "sensitive")

NO_INTENT, FASHION, HOME, TOOLS = INTENT_LABELS
NOT_SENSITIVE, SENSITIVE = SENSITIVE_LABELS

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sample:
    """One generated image and its labels.

    ``box`` is the main (biggest) vehicle, ``boxes`` every vehicle drawn, biggest first, so
    ``boxes[0] == box`` whenever there is a vehicle. ``color`` describes ``box`` only: other cars in a
    dealer scene have colours of their own.
    """

    image: Image.Image
    image_type: str
    color: str
    intent: str
    sensitive: str
    box: Box | None
    boxes: tuple[Box, ...] = field(default=())
    kinds: tuple[str, ...] = field(default=())  # each box's vehicle kind (classifier.contract.VEHICLE_KINDS)

    @property
    def kind(self) -> str:
        """The main vehicle's kind, "" where there is none."""
        return self.kinds[0] if self.kinds else ""
