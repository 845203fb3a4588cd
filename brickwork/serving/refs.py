"""Brick specs as users type them -> `BrickRef`s: kept importable here; the owner is `brickwork.bricks.refs`.

Example::

    refs = brick_refs(store, ["sentiment_binary:0.5", "sms_spam@2:0.5"])
"""

from brickwork.bricks.refs import brick_refs, parse_brick_spec

__all__ = ["brick_refs", "parse_brick_spec"]
