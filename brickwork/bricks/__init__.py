"""Bricks: the manifest, the versioned store, validation, training and merging."""

from brickwork.bricks.manifest import Manifest, check_name
from brickwork.bricks.store import Brick, BrickStore, default_library

__all__ = ["Brick", "BrickStore", "Manifest", "check_name", "default_library"]
